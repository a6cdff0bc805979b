"""The security policy: which credentials a spec may use (SPEC section 3)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

from .. import config
from ..errors import CredentialError
from .redaction import has_url_password, is_secret_key
from .references import Path, _setting, as_reference, walk

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class SecurityPolicy:
    """What credentials a spec may use (SPEC section 3).

    ``strict`` = Vault references only, no plaintext, every read audited;
    ``default`` = Vault or env references, a plaintext secret warns;
    ``permissive`` = anything. The single variables override the named policy.
    """

    name: str = "default"
    vault_only: bool = False
    allow_plaintext: bool = True
    audit: bool = False
    audit_log: str | None = None
    warn_plaintext: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "SecurityPolicy":
        """The policy set by ``PIPELINE_SECURITY_POLICY`` and the variables of SPEC section 3
        (``env``: those variables; default: :func:`config.environ`, ``%config`` values included)."""
        env = config.environ() if env is None else env
        name = env.get("PIPELINE_SECURITY_POLICY", "default").strip().lower() or "default"
        if name not in ("strict", "default", "permissive"):
            raise CredentialError(f"PIPELINE_SECURITY_POLICY is '{name}'", code="POLICY_UNKNOWN",
                                  hint="use strict, default or permissive",
                                  params={"variable": "PIPELINE_SECURITY_POLICY"})
        vault_only, plaintext, audit = {"strict": (True, False, True), "default": (False, True, False),
                                        "permissive": (False, True, False)}[name]

        def flag(var: str, default: bool) -> bool:
            value = env.get(var)
            if value is None:
                return default
            value = value.strip().lower()
            if value not in _TRUE + _FALSE:
                raise CredentialError(f"{var} is '{value}'", code="POLICY_INVALID", hint="use true or false",
                                      params={"variable": var})
            return value in _TRUE

        return cls(name, flag("PIPELINE_VAULT_ONLY", vault_only), flag("PIPELINE_ALLOW_PLAINTEXT", plaintext),
                   flag("PIPELINE_AUDIT_CREDENTIALS", audit), env.get("PIPELINE_AUDIT_LOG") or None,
                   warn_plaintext=name == "default")

    def check(self, config: Mapping[str, Any]) -> list[tuple[Path, str]]:
        """Problems with the secret settings of one step's config: (path, what is wrong; never the value)."""
        problems = []
        for path, value in walk(config):
            key = _setting(path)
            where = ".".join(str(p) for p in path) or key
            ref = as_reference(value)
            if ref is not None:
                if self.vault_only and ref.source != "vault":
                    problems.append((path, f"setting '{where}' comes from the environment ({ref}), but policy "
                                           f"'{self.name}' accepts only Vault references"))
                continue
            if value in (None, "") or not (is_secret_key(key) or
                                            (isinstance(value, str) and has_url_password(value))):
                continue
            what = "a literal secret" if is_secret_key(key) else "a URL with a literal password"
            if self.vault_only:
                problems.append((path, f"setting '{where}' is {what}; policy '{self.name}' needs a Vault "
                                       f"reference such as vault:secret/NAME#{key}"))
            elif not self.allow_plaintext:
                problems.append((path, f"setting '{where}' is {what}, and plaintext secrets are refused "
                                       "(PIPELINE_ALLOW_PLAINTEXT=false)"))
            elif self.warn_plaintext:
                warnings.warn(f"setting '{where}' is {what} written in the spec; use a vault: or env: reference",
                              stacklevel=2)
        return problems
