/**
 * The Node.js options every Parley server process is started with (the
 * image's entrypoint, `make run`, the npm scripts, the relay benchmark's
 * relay processes; test/unit/node-flags.test.ts keeps them in step).
 *
 * --max-semi-space-size=8: V8's young generation at 2 x 8 MiB. With the
 * default on a large host (32 MiB semi-spaces) and a server's small old
 * generation (~20 MiB), V8 starts incremental marking before the young
 * generation fills, so every collection became a full mark-compact: a relay
 * under bench/relay ran 38 mark-compacts and no scavenges in 7 s, and GC was a
 * third of its CPU. With 8 MiB: 3-9 mark-compacts and ~50 scavenges, relay CPU
 * per message 50-60 -> 38-42 µs, SendBatch 32 x 8 14.1-14.9k -> 15.5-17.0k
 * msgs/s (bench/RESULTS.md). It also makes the heap layout independent of the
 * host's memory. `parley_nodejs_gc_duration_seconds{kind}` shows the effect.
 */
export const SERVER_NODE_FLAGS = ["--max-semi-space-size=8"] as const;
