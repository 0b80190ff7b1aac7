// Pagination to the end: more items than one page, every item seen once, in order.

import assert from "node:assert/strict";
import { test } from "node:test";
import type { Interceptor } from "@connectrpc/connect";
import { control, newUser, userClient } from "./support.js";

test("listTransactionsAll follows next_page_token to the last page", async () => {
  const user = await newUser();
  const amounts = ["1.00", "2.00", "3.00", "4.00", "5.00", "6.00", "7.00"];
  for (const rupees of amounts) {
    await control("fund", { userId: user.userId, rupees });
  }
  let pages = 0;
  const counter: Interceptor = (next) => async (req) => {
    if (req.method.name === "ListTransactions") {
      pages++;
    }
    return next(req);
  };
  const { gc } = await userClient(user, { interceptors: [counter] });
  const seen: bigint[] = [];
  for await (const txn of gc.wallet.listTransactionsAll({ pageSize: 3 })) {
    seen.push(txn.txnId);
  }
  assert.equal(seen.length, amounts.length);
  assert.equal(new Set(seen).size, amounts.length, "each item once");
  assert.equal(pages, 3, "3 + 3 + 1");
  // Newest first, as ListTransactions documents.
  assert.deepEqual(
    [...seen].sort((a, b) => (a > b ? -1 : 1)),
    seen,
  );
  // One page only when it holds everything.
  pages = 0;
  const all = [];
  for await (const txn of gc.wallet.listTransactionsAll({ pageSize: 50 })) {
    all.push(txn);
  }
  assert.equal(all.length, amounts.length);
  assert.equal(pages, 1);
});
