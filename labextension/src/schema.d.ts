/** The spec's JSON Schema, imported by index.ts from pipeline_magics/ and bundled by webpack at build time. */
declare module '*/pipeline-spec.schema.json' {
  const schema: any;
  export default schema;
}
