/**
 * The customer's XSLT stylesheet, applied to each default XML export.
 *
 * The processor is xsltproc (libxslt, XSLT 1.0 + EXSLT), run as a child
 * process. Why it and not SaxonJS: it is free software packaged by Debian
 * (SaxonJS is proprietary-licensed), it needs no compile-to-SEF step for a
 * stylesheet mounted from a ConfigMap, it shares libxml2 with the xmllint
 * that validates our exports against the XSD, and a failing transform is
 * contained in its own process with a clear exit status and message. XSLT
 * 1.0 suffices for the archive formats customers ask for (the two shipped
 * examples produce Actiance-style XML and CSV). It runs with --nonet
 * --nowrite --nomkdir: a stylesheet can read local files but never write or
 * reach the network.
 */
import { spawn } from "node:child_process";

export class XsltError extends Error {}

export class XsltTransform {
  constructor(
    readonly stylesheet: string,
    private readonly timeoutMs = 60_000,
    private readonly binary = process.env.PARLEY_XSLTPROC ?? "xsltproc",
  ) {}

  /** Transforms one document; rejects with xsltproc's own message on failure. */
  apply(xml: string): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, ["--nonet", "--nowrite", "--nomkdir", this.stylesheet, "-"], { stdio: ["pipe", "pipe", "pipe"] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const timer = setTimeout(() => child.kill("SIGKILL"), this.timeoutMs);
      child.stdout.on("data", (c: Buffer) => out.push(c));
      child.stderr.on("data", (c: Buffer) => err.push(c));
      child.on("error", (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new XsltError(e.code === "ENOENT" ? `the XSLT processor '${this.binary}' is not installed (Debian package xsltproc)` : `cannot run ${this.binary}: ${e.message}`));
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        const message = Buffer.concat(err).toString("utf8").trim().split("\n").slice(0, 5).join("; ");
        if (signal) reject(new XsltError(`stylesheet ${this.stylesheet}: the transform did not finish within ${this.timeoutMs} ms`));
        else if (code !== 0) reject(new XsltError(`stylesheet ${this.stylesheet} failed (xsltproc exit ${code}): ${message || "no message"}`));
        else resolve(Buffer.concat(out));
      });
      child.stdin.on("error", () => undefined); // exits before reading everything: reported by 'close'
      child.stdin.end(xml);
    });
  }

  /** Compiles and runs the stylesheet on a minimal export, so a broken one is reported at start. */
  async check(sample: string): Promise<void> {
    await this.apply(sample);
  }
}
