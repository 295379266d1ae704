// Runs in every e2e test file: whatever a file started (servers, agents, temp dirs) is stopped
// and removed after its last test, even when a hook or test failed.
import { afterAll } from "vitest";
import { teardownAll } from "./harness/processes.js";

afterAll(async () => {
  await teardownAll();
});
