"""The ``%pipeline vault login`` form: address, method, its fields, Login, and a status line.

JupyterLab saves every widget's state into the .ipynb, so no secret may stay in
one: the token, password and secret-id fields are emptied right after each
login attempt (success or failure) and when the method changes, and the
token Vault returns is never put in any widget. The status line shows who is
logged in and the token's TTL. The logic is :func:`pipeline_magics.secrets.vault.login`.
"""
from __future__ import annotations

import html
import re
from typing import Any, Callable

try:
    import ipywidgets as widgets
except ImportError as exc:  # pragma: no cover - ipywidgets is a dependency, but may be removed
    widgets = None
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

from ..secrets import vault
from ..errors import PipelineError
from ..secrets.redaction import mask_text
from ..render.palette import DARK_GREY, GREEN, RED

OK, FAILED, NEUTRAL = GREEN, RED, DARK_GREY


class VaultLoginForm:
    """A login form for the kernel's Vault session; displays itself in a notebook."""

    def __init__(self, address: str | None = None, method: str = "token",
                 login: Callable[..., vault.TokenStatus] = vault.login) -> None:
        if widgets is None:
            raise ImportError("the Vault login form needs ipywidgets: pip install ipywidgets "
                              "(or log in without it: %pipeline vault login --method userpass --username NAME)"
                              ) from _IMPORT_ERROR
        self._login = login
        style = {"description_width": "90px"}

        def text(cls: Any, label: str, placeholder: str = "", value: str = "") -> Any:
            return cls(value=value, description=label, placeholder=placeholder, style=style,
                       layout=widgets.Layout(width="420px"))  # one each: fields are hidden one by one

        self.address = text(widgets.Text, "Address", "https://vault.example.com:8200", vault.address(address) or "")
        self.namespace = text(widgets.Text, "Namespace", "(optional)", vault.SESSION.namespace or "")
        self.method = widgets.Dropdown(options=[(vault.LABELS[m], m) for m in vault.METHODS], value=method,
                                       description="Method", style=style, layout=widgets.Layout(width="420px"))
        self.mount = text(widgets.Text, "Mount", "(default)")
        self.token = text(widgets.Password, "Token")
        self.username = text(widgets.Text, "Username")
        self.password = text(widgets.Password, "Password")
        self.role_id = text(widgets.Text, "Role ID")
        self.secret_id = text(widgets.Password, "Secret ID")
        self.button = widgets.Button(description="Login", button_style="primary", icon="sign-in")
        self.status = widgets.HTML(value=self._status_html(vault.status(address)) if vault.address(address) else "")
        self.fields = {"token": [self.token], "userpass": [self.mount, self.username, self.password],
                       "ldap": [self.mount, self.username, self.password],
                       "approle": [self.mount, self.role_id, self.secret_id]}
        self.box = widgets.VBox([self.address, self.namespace, self.method, self.mount, self.token, self.username,
                                 self.password, self.role_id, self.secret_id, self.button, self.status])
        self.method.observe(self._on_method, names="value")
        self.button.on_click(lambda _button: self.submit())
        self._show_fields(method)

    # ------------------------------------------------------------------ state

    @property
    def secret_widgets(self) -> list[Any]:
        """The fields that may hold a secret while typed."""
        return [self.token, self.password, self.secret_id]

    def all_widgets(self) -> list[Any]:
        """The form and every widget in it (whose state JupyterLab would save)."""
        out, todo = [], [self.box]
        while todo:
            w = todo.pop()
            out.append(w)
            todo.extend(getattr(w, "children", ()) or ())
            todo.extend(v for v in (getattr(w, "layout", None), getattr(w, "style", None)) if v is not None)
        return out

    def clear_secrets(self) -> None:
        """Empties the token, password and secret-id fields."""
        for w in self.secret_widgets:
            w.value = ""

    # ---------------------------------------------------------------- actions

    def submit(self) -> vault.TokenStatus | None:
        """Logs in with the form's values (what Login does); returns the status, or None on failure."""
        values = {"token": self.token.value, "username": self.username.value.strip(),
                  "password": self.password.value, "role_id": self.role_id.value.strip(),
                  "secret_id": self.secret_id.value}
        self.clear_secrets()  # before anything else can fail: the state never keeps them
        secrets = [values[k] for k in ("token", "password", "secret_id") if values[k]]
        method = self.method.value
        wanted = {"token": ("token",), "userpass": ("username", "password"), "ldap": ("username", "password"),
                  "approle": ("role_id", "secret_id")}[method]
        self.button.disabled = True
        self.status.value = "<i>logging in…</i>"
        try:
            result = self._login(method, addr=self.address.value.strip() or None,
                                 namespace=self.namespace.value.strip() or None,
                                 mount=self.mount.value.strip() or None, **{k: values[k] for k in wanted})
        except PipelineError as exc:
            self.status.value = self._error_html(f"{type(exc).__name__}: {exc.message}", exc.hint, secrets)
            return None
        except Exception as exc:  # noqa: BLE001 - the form shows every failure, never raises into the frontend
            self.status.value = self._error_html(f"{type(exc).__name__}: {exc}", None, secrets)
            return None
        finally:
            values.clear()
            secrets.clear()
            self.clear_secrets()
            self.button.disabled = False
        self.status.value = self._status_html(result)
        return result

    def _on_method(self, change: dict[str, Any]) -> None:
        self.clear_secrets()
        self._show_fields(change["new"])

    def _show_fields(self, method: str) -> None:
        shown = self.fields[method]
        for w in (self.mount, self.token, self.username, self.password, self.role_id, self.secret_id):
            w.layout.display = None if w in shown else "none"
        self.mount.placeholder = "token" if method == "token" else method

    # --------------------------------------------------------------- display

    @staticmethod
    def _status_html(result: vault.TokenStatus) -> str:
        # not being logged in yet is a state, not a failure: only a failed login is red
        colour = OK if result.authenticated else NEUTRAL
        mark = "✔" if result.authenticated else "○"
        return f"<span style='color:{colour}'>{mark} {html.escape(result.text())}</span>"

    @staticmethod
    def _error_html(message: str, hint: str | None, secrets: list[str]) -> str:
        text = mask_text(message, secrets) + (f" — {hint}" if hint else "")
        return f"<span style='color:{FAILED}'>✘ {html.escape(text)}</span>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.box._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):  # the VBox's own text repr would list every field's value
            bundle["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        state = html.unescape(re.sub(r"<[^>]+>", "", self.status.value)).strip()
        return f"<VaultLoginForm {self.address.value or '(no address)'}: {self.method.value}" + \
            (f"; {state}>" if state else ">")
