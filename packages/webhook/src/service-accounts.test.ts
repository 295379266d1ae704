import { afterEach, describe, expect, it } from "vitest";
import { startServiceAccountInformer, type ServiceAccountDirectory } from "./service-accounts.js";
import { FakeApiServer, captureLogs, eventually, serviceAccount as sa } from "./test-helpers.js";

describe("service account informer", () => {
  let api: FakeApiServer | undefined;
  let directory: ServiceAccountDirectory | undefined;

  afterEach(async () => {
    await directory?.stop();
    await api?.close();
  });

  it("serves annotations from the list and follows watch events", async () => {
    api = new FakeApiServer([
      sa("payments", "payments-api", { "azure.workload.identity/client-id": "client-1" }, "90"),
    ]);
    const kubeConfig = await api.listen();
    directory = startServiceAccountInformer({ kubeConfig, logger: captureLogs().logger });
    expect(directory.annotations("payments", "payments-api")).toBeUndefined();
    await eventually(() => directory?.synced() === true);
    expect(directory.annotations("payments", "payments-api")).toEqual({
      "azure.workload.identity/client-id": "client-1",
    });
    expect(directory.annotations("other", "payments-api")).toBeUndefined();

    await eventually(() => api?.watching === true);
    api.event(
      "MODIFIED",
      sa("payments", "payments-api", { "azure.workload.identity/client-id": "client-2" }, "101"),
    );
    api.event("ADDED", sa("orders", "orders-api", { team: "orders" }, "102"));
    await eventually(() => directory?.annotations("orders", "orders-api")?.team === "orders");
    expect(
      directory.annotations("payments", "payments-api")?.["azure.workload.identity/client-id"],
    ).toBe("client-2");
  });

  it("retries a failed list and becomes synced", async () => {
    api = new FakeApiServer([sa("payments", "payments-api", { a: "b" }, "90")]);
    api.listFailures = 2;
    const kubeConfig = await api.listen();
    const logs = captureLogs();
    directory = startServiceAccountInformer({ kubeConfig, logger: logs.logger, retryDelayMs: 20 });
    await eventually(() => directory?.synced() === true);
    expect(api.lists).toBe(3);
    expect(logs.text()).toContain("service account watch failed; retrying");
    expect(directory.annotations("payments", "payments-api")).toEqual({ a: "b" });
  });
});
