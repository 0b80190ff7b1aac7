// The generated methods table (src/gen/methods.ts), looked up by method descriptor.

import type { DescMessage, DescMethod } from "@bufbuild/protobuf";
import { METHODS, type MethodInfo } from "./gen/methods.js";

export type { MethodInfo, StreamKind, Audience } from "./gen/methods.js";
export { METHODS };

/** The gRPC path of a method: `/gencharge.v1.RechargeService/Recharge`. */
export function pathOf(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** The generated row of a method (undefined for a method outside the contract). */
export function methodInfo(method: DescMethod): MethodInfo | undefined {
  return METHODS[pathOf(method)];
}

/** The protobuf-es property name of a field given its proto name (`request_id` ->
 * `requestId`), resolved on the message descriptor. */
export function localName(message: DescMessage, protoName: string): string {
  const field = message.fields.find((f) => f.name === protoName);
  if (field === undefined) {
    throw new Error(`${message.typeName} has no field ${protoName}`);
  }
  return field.localName;
}
