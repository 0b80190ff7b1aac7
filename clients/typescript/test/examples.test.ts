// The examples of docs/clients/typescript.md (clients/typescript/examples/*.ts, embedded
// in the page verbatim: tests/clients/typescript checks they agree) run against the real
// server as the page tells a reader to run them.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { balance, control, env, ledger, newPlan, newUser } from "./support.js";

const examples = fileURLToPath(new URL("../examples/", import.meta.url));

function run(
  example: string,
  vars: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(examples, example)],
      { env: { ...process.env, GENCHARGE_ADDRESS: env.address, ...vars }, timeout: 300_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

test("examples/bff-recharge: sign in, quote, recharge, replay, and the error branches", async () => {
  const user = await newUser("50.00");
  const planId = await newPlan("19.00");
  const vars = {
    GENCHARGE_EMAIL: user.email,
    GENCHARGE_PASSWORD: user.password,
    GENCHARGE_PHONE: user.phoneNumber,
    GENCHARGE_PLAN_ID: String(planId),
  };
  const paid = await run("bff-recharge.js", vars);
  assert.equal(paid.code, 0, paid.stderr + paid.stdout);
  assert.match(paid.stdout, /^quote: Plan 19\.00, pay Rs 19\.00$/m);
  const txn = /^recharged: transaction (\d+), Rs 19\.00$/m.exec(paid.stdout)?.[1];
  assert.ok(txn, paid.stdout);
  assert.match(paid.stdout, new RegExp(`^replayed: transaction ${txn}, charged once$`, "m"));
  const debits = (await ledger(user.userId)).filter((row) => row.type === "debit");
  assert.deepEqual(
    debits.map((d) => String(d.txnId)),
    [txn],
  );
  assert.equal(await balance(user.userId), "31.00");

  // A wallet that cannot pay: the quote says so (an answer, not an error).
  const poor = await newUser("1.00");
  const notEligible = await run("bff-recharge.js", {
    ...vars,
    GENCHARGE_EMAIL: poor.email,
    GENCHARGE_PHONE: poor.phoneNumber,
  });
  assert.equal(notEligible.code, 2, notEligible.stderr + notEligible.stdout);
  assert.match(notEligible.stdout, /^not eligible: INSUFFICIENT_FUNDS/m);

  // A wrong password: the typed error's branch.
  const refused = await run("bff-recharge.js", { ...vars, GENCHARGE_PASSWORD: "not the password" });
  assert.equal(refused.code, 1, refused.stderr + refused.stdout);
  assert.match(refused.stdout, /^sign-in refused: wrong e-mail or password$/m);
  assert.ok(!refused.stdout.includes(user.password) && !refused.stderr.includes(user.password));
});

test("examples/batch-recharge: 10,000 items with a progress bar", async () => {
  const total = Number(process.env.GENCHARGE_EXAMPLE_BATCH_SIZE ?? 10_000);
  const account = await control<{ clientId: string; clientSecret: string }>("service", {
    scopes: ["recharges.write"],
  });
  const planId = await newPlan("1.00");
  const customers = await Promise.all(Array.from({ length: 20 }, () => newUser("1000.00")));
  // One customer cannot pay: their orders fail with INSUFFICIENT_FUNDS, the rest go on.
  const poor = await newUser("0.50");
  const orders = [...customers, poor].map((c) => ({
    userId: c.userId,
    phoneNumber: c.phoneNumber,
    planId,
  }));
  const dir = mkdtempSync(join(tmpdir(), "gencharge-batch-"));
  try {
    const file = join(dir, "orders.json");
    writeFileSync(file, JSON.stringify(orders));
    const vars = {
      GENCHARGE_CLIENT_ID: account.clientId,
      GENCHARGE_CLIENT_SECRET: account.clientSecret,
      GENCHARGE_ORDERS: file,
      GENCHARGE_BATCH_ID: `docs-${account.clientId}`,
      GENCHARGE_BATCH_SIZE: String(total),
    };
    const first = await run("batch-recharge.js", vars);
    assert.equal(first.code, 0, first.stderr + first.stdout);
    const poorOrders =
      Math.floor(total / orders.length) + (total % orders.length > orders.length - 1 ? 1 : 0);
    assert.match(
      first.stdout,
      new RegExp(`: ${total - poorOrders} recharged, ${poorOrders} failed in `),
    );
    assert.match(first.stdout, new RegExp(`INSUFFICIENT_FUNDS: ${poorOrders}\\b`));
    assert.match(
      first.stderr,
      new RegExp(`\\[#{30}\\] ${total}/${total} ok ${total - poorOrders}`),
    );
    const debits = async () =>
      (await Promise.all(customers.map((c) => ledger(c.userId))))
        .flat()
        .filter((r) => r.type === "debit").length;
    assert.equal(await debits(), total - poorOrders);
    // The same batch again (its first 1,000 orders, to keep the test short): every order
    // already ran, the server answers with the original results, nothing is debited twice.
    const again = await run("batch-recharge.js", {
      ...vars,
      GENCHARGE_BATCH_SIZE: String(Math.min(total, 1000)),
    });
    assert.equal(again.code, 0, again.stderr + again.stdout);
    console.log(first.stdout.trim());
    assert.equal(await debits(), total - poorOrders);
    assert.equal(await balance(poor.userId), "0.50");
    await control("assert_ledger");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
