// A BFF (backend-for-frontend): a customer signs in, gets a quote, and recharges at the
// quoted price. The purchase is replay-safe (one request_id per purchase) and every
// failure is a typed error to branch on.
//
// Configuration (environment): GENCHARGE_ADDRESS, GENCHARGE_EMAIL, GENCHARGE_PASSWORD,
// GENCHARGE_PHONE (the number to recharge), GENCHARGE_PLAN_ID.
import { randomUUID } from "node:crypto";
import {
  AccountBlocked,
  InsufficientFunds,
  InvalidCredentials,
  PlanInactive,
  PriceChanged,
  RateLimited,
  SessionCredentials,
  Unavailable,
  createGenChargeClient,
  formatMoney,
  type SessionTokens,
} from "@gencharge/client";

const gc = createGenChargeClient({
  baseUrl: process.env.GENCHARGE_ADDRESS ?? "http://127.0.0.1:50051",
});

// 1. Sign in. The SDK refreshes the access token before it expires, one refresh at a
//    time however many requests are in flight; `onTokens` hands over every new token
//    pair so the BFF keeps the newest refresh token in its session store.
const sessionStore = new Map<string, SessionTokens>();
let credentials: SessionCredentials;
try {
  credentials = await SessionCredentials.login(
    gc,
    { email: process.env.GENCHARGE_EMAIL!, password: process.env.GENCHARGE_PASSWORD! },
    { onTokens: (tokens) => void sessionStore.set("customer-session", tokens) },
  );
} catch (error) {
  if (error instanceof InvalidCredentials) {
    console.log("sign-in refused: wrong e-mail or password");
  } else if (error instanceof RateLimited) {
    console.log(`too many attempts: try again in ${error.retryAfterSeconds} s`);
  } else if (error instanceof AccountBlocked) {
    console.log("this account is blocked");
  } else {
    throw error;
  }
  process.exit(1);
}
sessionStore.set("customer-session", credentials.tokens());
const customer = gc.withCredentials(credentials);

// 2. Quote: price, discount, amount to pay. Ineligibility is an answer, not an error.
const phoneNumber = process.env.GENCHARGE_PHONE!;
const planId = BigInt(process.env.GENCHARGE_PLAN_ID!);
const quote = await customer.recharge.quoteRecharge({ phoneNumber, planId });
if (!quote.eligible) {
  console.log(`not eligible: ${quote.reasons.map((r) => r.reason).join(", ")}`);
  process.exit(2);
}
console.log(`quote: ${quote.plan?.planName}, pay ${formatMoney(quote.amountToPay)}`);

// 3. Recharge at the quoted price. The request_id names this purchase: create it once,
//    when the customer taps "Pay", and keep it with the checkout. The SDK retries lost
//    answers with it, and so may you: the server answers every retry of the purchase
//    with the same recharge, and debits the wallet once.
const purchase = {
  requestId: randomUUID(),
  phoneNumber,
  planId,
  expectedAmount: quote.amountToPay,
};
try {
  const recharge = await customer.recharge.recharge(purchase);
  console.log(
    `recharged: transaction ${recharge.transaction?.txnId}, ${formatMoney(recharge.transaction?.amount)}`,
  );
  // The app sends the same purchase again (a double tap, an answer it never got):
  const again = await customer.recharge.recharge(purchase);
  console.log(`replayed: transaction ${again.transaction?.txnId}, charged once`);
} catch (error) {
  if (error instanceof PriceChanged) {
    console.log("the price changed since the quote: quote again and ask the customer");
  } else if (error instanceof InsufficientFunds) {
    console.log(`the wallet cannot pay ${formatMoney(quote.amountToPay)}: top up first`);
  } else if (error instanceof PlanInactive) {
    console.log("this plan is no longer on sale");
  } else if (error instanceof Unavailable) {
    // Still unavailable after the SDK's retries: tell the customer to try again, and
    // retry later with the same purchase.requestId (never charged twice).
    console.log(`try again later (${error.reason}); purchase ${error.requestId} is safe to retry`);
  } else {
    throw error;
  }
  process.exitCode = 3;
}
gc.close();
