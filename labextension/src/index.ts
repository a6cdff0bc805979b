/**
 * YAML highlighting of `%%pipeline` cells in JupyterLab 4.
 *
 * JupyterLab gives every code cell the kernel's language (Python) through a compartment of its own.
 * This extension adds to every CodeMirror editor a compartment of its own holding, while the document
 * starts with `%%pipeline`, a language of higher precedence than the kernel's: the first line is the
 * magic and its options, the rest is YAML, tokenized by the YAML mode JupyterLab uses for `.yaml` files
 * (so the colours are the theme's YAML colours). The compartment is filled from the cell's source when
 * the editor is made and switched by the transaction that adds or removes the magic, so it follows every
 * edit without touching JupyterLab's own language setting: other cells keep the kernel's language.
 * Tokens in such a cell also carry the stable `tok-*` classes of @lezer/highlight's classHighlighter.
 *
 * The same compartment turns on CodeMirror's completion in such a cell, fed from the spec's JSON Schema
 * (pipeline_magics/pipeline-spec.schema.json, bundled by the build): after `method:` the methods of the
 * step's `type` (all of them without one), and keys typed under a step's `config:` the settings of its
 * method, with their descriptions. Kernel cells get no CodeMirror completion; JupyterLab's own
 * completer (Tab) is left as it is. JupyterLab does not share @codemirror/autocomplete with extensions
 * (it bundles its copy for closeBrackets), so this extension bundles its own; it only reads JupyterLab's
 * shared @codemirror/state, view and language.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';
import { autocompletion, Completion, CompletionContext, CompletionResult } from '@codemirror/autocomplete';
import { languageDataProp, StreamLanguage, StringStream, syntaxHighlighting } from '@codemirror/language';
import { yaml } from '@codemirror/legacy-modes/mode/yaml';
import { Compartment, EditorState, Extension, Prec, Text } from '@codemirror/state';
import { classHighlighter } from '@lezer/highlight';
// The spec's JSON Schema from the Python package, the one source (src/schema.d.ts types it); webpack bundles it.
import schema from '../../pipeline_magics/pipeline-spec.schema.json';

const MAGIC = '%%pipeline';

interface State {
  first: boolean; // still on the magic's line
  yaml: any; // the YAML mode's state (flat, primitive fields)
}

/** The cell: the magic line (`%%pipeline` then its options), then a YAML body. */
export const pipelineYaml = StreamLanguage.define<State>({
  name: 'pipeline-yaml',
  startState: (indentUnit: number) => ({ first: true, yaml: yaml.startState!(indentUnit) }),
  copyState: (s: State) => ({ first: s.first, yaml: { ...s.yaml } }),
  token(stream: StringStream, state: State): string | null {
    if (state.first) {
      let style: string | null = null;
      if (stream.sol() && stream.match(MAGIC)) {
        style = 'keyword';
      } else if (!stream.eatSpace()) {
        stream.match(/^\S+/);
        style = stream.current().startsWith('-') ? 'attribute' : 'string';
      }
      if (stream.eol()) {
        state.first = false;
      }
      return style;
    }
    return yaml.token(stream, state.yaml);
  },
  languageData: { ...yaml.languageData, autocomplete: pipelineCompletions }
});

interface Method {
  type: string; // extract, transform or load
  option: Completion; // the method's name, described
  settings: Completion[]; // its `config` keys, described
}

/** Every method, from the schema's step variants: `type` and `method` consts, `config` a $ref to its settings. */
const METHODS: Method[] = schema.properties.steps.items.oneOf.map((variant: any): Method => {
  const { type, method, config } = variant.properties;
  const settings = schema.$defs[config.$ref.replace('#/$defs/', '')].properties ?? {};
  return {
    type: type.const,
    option: { label: method.const, type: 'function', detail: type.const, info: variant.description },
    settings: Object.entries(settings).map(([key, s]: [string, any]) => ({
      label: key,
      type: 'property',
      info: s.description
    }))
  };
});

interface Line {
  indent: number; // leading spaces
  col: number; // where the content starts, after a list item's `- `
  item: boolean; // starts a list item
  key: string | null; // `key:` at col, if any
  value: string; // the word after `key: `
}

/** A line of the YAML body; null when it is blank or a comment. */
function parseLine(text: string): Line | null {
  const [, spaces, dash = '', rest] = /^( *)(- +)?(.*)$/.exec(text)!;
  if (!dash && (rest.trim() === '' || rest.startsWith('#'))) {
    return null;
  }
  const pair = /^([\w-]+):(?:\s+["']?([\w-]*))?/.exec(rest);
  return {
    indent: spaces.length,
    col: spaces.length + dash.length,
    item: dash !== '',
    key: pair ? pair[1] : null,
    value: pair?.[2] ?? ''
  };
}

/** The `key: value` pairs of the block mapping (a step) whose keys sit at column `col` around line `at`. */
function mappingAt(doc: Text, at: number, col: number): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const step of [-1, 1]) {
    for (let n = step < 0 ? at : at + 1; n > 1 && n <= doc.lines; n += step) {
      const line = parseLine(doc.line(n).text);
      if (!line || (line.col > col && line.indent >= col)) {
        continue; // blank, a comment or nested deeper
      }
      if (line.col !== col || (line.item && step > 0)) {
        break; // the mapping's parent, or the next list item
      }
      if (line.key && !(line.key in fields)) {
        fields[line.key] = line.value;
      }
      if (line.item) {
        break; // the first line of this list item
      }
    }
  }
  return fields;
}

/** Completions in a `%%pipeline` cell: a step's `method:` value, or a key under a step's `config:`. */
function pipelineCompletions(context: CompletionContext): CompletionResult | null {
  const { state, pos } = context;
  const line = state.doc.lineAt(pos);
  const before = line.text.slice(0, pos - line.from);
  const method = /^( *)(- +)?method: *([\w-]*)$/.exec(before);
  const key = /^( *)([\w-]*)$/.exec(before);
  const word = method ? method[3] : key ? key[2] : '';
  if (line.number === 1 || (!word && !context.explicit)) {
    return null; // the magic's line; or nothing typed yet and no Ctrl+Space
  }
  let options: Completion[] = [];
  if (method) {
    const type = mappingAt(state.doc, line.number, method[1].length + (method[2] ?? '').length).type;
    const ofType = METHODS.filter(m => m.type === type);
    options = (ofType.length ? ofType : METHODS).map(m => m.option);
  } else if (key) {
    // the parent: the nearest line above whose content starts left of this key
    for (let n = line.number - 1; n > 1; n--) {
      const parent = parseLine(state.doc.line(n).text);
      if (parent && parent.col < key[1].length) {
        if (parent.key === 'config' && !parent.value) {
          const name = mappingAt(state.doc, n, parent.col).method;
          options = METHODS.find(m => m.option.label === name)?.settings ?? [];
        }
        break;
      }
    }
  }
  return options.length ? { from: pos - word.length, options, validFor: /^[\w-]*$/ } : null;
}

/** Whether a cell's source is a `%%pipeline` cell. */
export function isPipelineCell(source: string): boolean {
  return source.startsWith(MAGIC);
}

/** The YAML language (above the kernel's), its completion, and `tok-*` classes on its tokens only. */
const YAML_CELL: Extension = [
  Prec.highest(pipelineYaml.extension),
  autocompletion(),
  syntaxHighlighting({
    style: tags => classHighlighter.style(tags),
    scope: type => type.prop(languageDataProp) === pipelineYaml.data
  })
];

/** An editor's extension: YAML_CELL while its document starts with the magic, nothing otherwise. */
export function pipelineYamlExtension(source: string): Extension {
  const mode = new Compartment();
  const content = (on: boolean) => (on ? YAML_CELL : []);
  return [
    mode.of(content(isPipelineCell(source))),
    EditorState.transactionExtender.of(tr => {
      if (!tr.docChanged) {
        return null;
      }
      const on = isPipelineCell(tr.newDoc.sliceString(0, MAGIC.length));
      return on === (mode.get(tr.startState) === YAML_CELL) ? null : { effects: mode.reconfigure(content(on)) };
    })
  ];
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'pipeline-magics:yaml-cells',
  description: 'YAML highlighting and schema completion of %%pipeline cell bodies',
  autoStart: true,
  requires: [IEditorExtensionRegistry],
  activate: (app: JupyterFrontEnd, registry: IEditorExtensionRegistry) => {
    registry.addExtension({
      name: 'pipeline-magics:yaml-cells',
      factory: options =>
        EditorExtensionRegistry.createImmutableExtension(pipelineYamlExtension(options.model.sharedModel.getSource()))
    });
  }
};

export default plugin;
