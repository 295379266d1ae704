// The e2e suite (`npm run test:e2e`): real etcd, kube-apiserver, kube-controller-manager,
// OpenBao and PostgreSQL on loopback. Files run one after another (each starts its own servers
// and the machine has few cores); timeouts are generous because servers start here.
import { defineConfig } from "vitest/config";
import { loadProvisionedEnv } from "./test/e2e/global-setup.js";

export default defineConfig({
  test: {
    include: ["test/e2e/**/*.e2e.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 30_000,
    globalSetup: ["test/e2e/global-setup.ts"],
    setupFiles: ["test/e2e/setup-file.ts"],
    // Workers get the provisioned binary paths directly (not only via the global setup's process).
    env: loadProvisionedEnv(),
    reporters: ["default"],
  },
});
