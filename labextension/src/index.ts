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
 * Completion (Tab) is the kernel's, as in every other cell: pipeline_magics answers it in a `%%pipeline`
 * cell's YAML (methods, settings, keys), so JupyterLab shows one completer, the same as Notebook 7's and
 * VS Code's; this extension adds none of its own.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';
import { languageDataProp, StreamLanguage, StringStream, syntaxHighlighting } from '@codemirror/language';
import { yaml } from '@codemirror/legacy-modes/mode/yaml';
import { Compartment, EditorState, Extension, Prec } from '@codemirror/state';
import { classHighlighter } from '@lezer/highlight';

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
  languageData: yaml.languageData
});

/** Whether a cell's source is a `%%pipeline` cell. */
export function isPipelineCell(source: string): boolean {
  return source.startsWith(MAGIC);
}

/** The YAML language (above the kernel's) and `tok-*` classes on its tokens only. */
const YAML_CELL: Extension = [
  Prec.highest(pipelineYaml.extension),
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
  description: 'YAML highlighting of %%pipeline cell bodies',
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
