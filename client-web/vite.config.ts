import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// Two pages: the viewer (index.html) and "Go live" (publish.html); `npm run build` writes both
// to dist/, which the demo and the e2e tests serve as they are.
export default defineConfig({
  build: {
    target: "es2022",
    outDir: "dist",
    sourcemap: true,
    rollupOptions: {
      input: {
        main: fileURLToPath(new URL("./index.html", import.meta.url)),
        publish: fileURLToPath(new URL("./publish.html", import.meta.url)),
      },
    },
  },
  server: {
    host: true,
  },
  test: {
    include: ["tests/**/*.test.ts"],
    environment: "node",
  },
});
