import assert from "node:assert/strict";
import { test } from "node:test";
import { money, moneyToString } from "../src/index.js";
import { client, ledger, newPlan, newUser, userClient } from "./support.js";

test("public call, login and a wallet recharge", async () => {
  const gc = client();
  const user = await newUser("100.00");
  const planId = await newPlan("19.50");
  const plans = await gc.plan.listPlans({ pageSize: 5 });
  assert.ok(plans.plans.length > 0);
  const { gc: me } = await userClient(user);
  const wallet = await me.wallet.getWallet({});
  assert.equal(moneyToString(wallet.balance), "100.00");
  const quote = await me.recharge.quoteRecharge({
    phoneNumber: user.phoneNumber,
    planId: BigInt(planId),
  });
  assert.equal(moneyToString(quote.amountToPay), "19.50");
  const recharge = await me.recharge.recharge({
    phoneNumber: user.phoneNumber,
    planId: BigInt(planId),
    expectedAmount: money("19.50"),
  });
  assert.ok(recharge.transaction);
  const rows = await ledger(user.userId);
  assert.equal(rows.filter((r) => r.type === "debit").length, 1);
});
