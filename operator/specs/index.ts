/** Pure builders of the objects the operator owns. */
export * from "./meta.js";
export * from "./relay.js";
export * from "./chat.js";
export * from "./compliance.js";
