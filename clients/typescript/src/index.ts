// @gencharge/client: the TypeScript SDK of the GenCharge gRPC API (see README.md).

export { Code, ConnectError } from "@connectrpc/connect";
export type { CallOptions } from "@connectrpc/connect";

export { createGenChargeClient, DEFAULT_TIMEOUT_MS } from "./client.js";
export type { ClientOptions, GenChargeClient, ServiceClients } from "./client.js";
export {
  BearerToken,
  MfaStep,
  ServiceAccountCredentials,
  SessionCredentials,
  jwtExpiryMs,
} from "./credentials.js";
export type {
  AuthClient,
  Credentials,
  CredentialsOptions,
  SessionOptions,
  SessionTokens,
} from "./credentials.js";
export * from "./errors.js";
export {
  authInterceptor,
  isTokenExpired,
  lostConnectionInterceptor,
  requestIdInterceptor,
  retryInterceptor,
} from "./interceptors.js";
export { METHODS, localName, methodInfo, pathOf } from "./methods.js";
export type { Audience, MethodInfo, StreamKind } from "./methods.js";
export { paginate } from "./pagination.js";
export {
  DEFAULT_RETRY_POLICY,
  RETRY_POLICY,
  backoffMs,
  isSafeToRetry,
  retryDelayMs,
  withRetry,
} from "./retry.js";
export type { RetryEvent, RetryPolicy } from "./retry.js";
export {
  CURRENCY,
  MoneyError,
  formatMoney,
  fromMinorUnits,
  money,
  moneyToString,
  toMinorUnits,
} from "./money.js";
export { batchRecharge } from "./batch.js";
export type { BatchClient, BatchItem, BatchOptions, BatchProgress, BatchResult } from "./batch.js";
export { SERVICES } from "./gen/services.js";
export type { Paginators } from "./gen/services.js";
// The generated message types, enums and service descriptors.
export * from "./gen/gencharge/v1/access_pb.js";
export * from "./gen/gencharge/v1/admin_service_pb.js";
export * from "./gen/gencharge/v1/auth_service_pb.js";
export * from "./gen/gencharge/v1/backup_service_pb.js";
export * from "./gen/gencharge/v1/common_pb.js";
export * from "./gen/gencharge/v1/content_service_pb.js";
export * from "./gen/gencharge/v1/identity_pb.js";
export * from "./gen/gencharge/v1/notification_service_pb.js";
export * from "./gen/gencharge/v1/plan_service_pb.js";
export * from "./gen/gencharge/v1/recharge_service_pb.js";
export * from "./gen/gencharge/v1/transaction_pb.js";
export * from "./gen/gencharge/v1/wallet_service_pb.js";
