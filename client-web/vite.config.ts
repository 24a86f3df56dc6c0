import { defineConfig } from "vitest/config";

// The demo page (index.html) is the app entry; `npm run build` writes it to dist/.
export default defineConfig({
  build: {
    target: "es2022",
    outDir: "dist",
    sourcemap: true,
  },
  server: {
    host: true,
  },
  test: {
    include: ["tests/**/*.test.ts"],
    environment: "node",
  },
});
