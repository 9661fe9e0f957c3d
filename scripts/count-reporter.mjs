// Custom node:test reporter used by scripts/run-tests.mjs.
//
// It writes one tab-separated line per finished leaf test (every test that is
// not a suite, i.e. `details.type !== 'suite'`), so a run that is killed
// half-way still leaves readable partial counts behind:
//
//   <status>\t<file>:<line>\t<name>
//
// status is `pass`, `fail` or `skip` (skipped and todo tests, including a
// failing todo test, count as `skip`). Failures of a whole file (it could not
// be loaded, or its process exited non-zero) arrive as a `test:fail` named
// after the file and are counted as failures, which is what we want.
//
// Usage: node --test --test-reporter=./scripts/count-reporter.mjs \
//                    --test-reporter-destination=counts.txt ...

const flagged = (v) => v !== undefined && v !== null && v !== false;
const clean = (s) => String(s ?? "").replace(/[\t\r\n]+/g, " ");

export default async function* countReporter(source) {
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const data = event.data ?? {};
    if (data.details?.type === "suite") continue;
    let status;
    if (flagged(data.skip) || flagged(data.todo)) status = "skip";
    else status = event.type === "test:pass" ? "pass" : "fail";
    const where = data.file ? `${data.file}${data.line ? `:${data.line}` : ""}` : "?";
    yield `${status}\t${clean(where)}\t${clean(data.name)}\n`;
  }
}
