/** Likes, comments and gifts (docs/interactions.md): payloads and the viewer side. */
export * from "./payload";
export * from "./interactions";
