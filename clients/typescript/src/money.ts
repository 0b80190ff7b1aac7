// Money: gencharge.v1.Money is integer minor units (paise) plus the currency code; the
// API has no floating-point fields and neither do these helpers. Amounts are decimal
// strings ("199.50") or bigint minor units (19950n); only INR is accepted.

import { create } from "@bufbuild/protobuf";
import { MoneySchema, type Money } from "./gen/gencharge/v1/common_pb.js";

export const CURRENCY = "INR";
/** Minor units per unit (paise per rupee). */
const MINOR_PER_UNIT = 100n;
const DECIMAL = /^(-)?(\d+)(?:\.(\d{1,2}))?$/;

export class MoneyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MoneyError";
  }
}

function checkCurrency(currency: string): void {
  if (currency !== CURRENCY) {
    throw new MoneyError(`only ${CURRENCY} is supported, not ${JSON.stringify(currency)}`);
  }
}

/** "199.50" -> 19950n. At most two decimal places; no floats, no exponents. */
export function toMinorUnits(amount: string): bigint {
  if (typeof amount !== "string") {
    throw new MoneyError('amounts are decimal strings such as "199.50" (never floats)');
  }
  const match = DECIMAL.exec(amount.trim());
  if (match === null) {
    throw new MoneyError(`not an amount with at most 2 decimal places: ${JSON.stringify(amount)}`);
  }
  const [, minus, units, fraction = ""] = match;
  const minor = BigInt(units!) * MINOR_PER_UNIT + BigInt(fraction.padEnd(2, "0"));
  return minus ? -minor : minor;
}

/** 19950n -> "199.50". */
export function fromMinorUnits(minor: bigint): string {
  if (typeof minor !== "bigint") {
    throw new MoneyError("minor units are a bigint (e.g. 19950n)");
  }
  const negative = minor < 0n;
  const abs = negative ? -minor : minor;
  const units = abs / MINOR_PER_UNIT;
  const fraction = (abs % MINOR_PER_UNIT).toString().padStart(2, "0");
  return `${negative ? "-" : ""}${units}.${fraction}`;
}

/** A Money message: money("199.50") or money(19950n) -> {unitsMinor: 19950n, "INR"}. */
export function money(amount: string | bigint, currency: string = CURRENCY): Money {
  checkCurrency(currency);
  const unitsMinor = typeof amount === "bigint" ? amount : toMinorUnits(amount);
  return create(MoneySchema, { unitsMinor, currencyCode: currency });
}

/** A Money message as a decimal string: {19950n, "INR"} -> "199.50" (an empty currency
 * means INR). */
export function moneyToString(value: Money | undefined): string {
  if (value === undefined) {
    return fromMinorUnits(0n);
  }
  checkCurrency(value.currencyCode || CURRENCY);
  return fromMinorUnits(value.unitsMinor);
}

/** "Rs 199.50" for people (the decimal string with the currency's sign). */
export function formatMoney(value: Money | undefined): string {
  return `Rs ${moneyToString(value)}`;
}
