import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'

// Target of the dev-server proxy; override with MINITOWER_API=http://host:port npm run dev
const apiTarget = process.env.MINITOWER_API ?? 'http://127.0.0.1:8080'

export default defineConfig({
  base: '/',
  plugins: [vue()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    // No source maps: keeps the committed, embedded bundle small and deterministic.
    sourcemap: false,
    chunkSizeWarningLimit: 1000,
  },
  server: {
    proxy: {
      // Plain http proxy; SSE (logs/stream) passes through unbuffered.
      '/api': { target: apiTarget, changeOrigin: true },
      '/health': { target: apiTarget, changeOrigin: true },
    },
  },
  test: {
    environment: 'happy-dom',
    include: ['tests/**/*.test.ts'],
  },
})
