/** The operator's API: custom resource types and their defaults. */
export * from "./types.js";
export * from "./defaults.js";
