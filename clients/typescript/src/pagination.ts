// Pagination (AIP-158): every item of every page, following next_page_token until it is
// empty. The generated `<method>All` paginators of each List* RPC use this; the items
// field is the response's one repeated message field (src/gen/methods.ts).

import type { CallOptions } from "@connectrpc/connect";

export type PageCall = (
  request: Record<string, unknown>,
  options?: CallOptions,
) => Promise<Record<string, unknown>>;

/** Yield the items of each page from `call(request)`, then of the next pages. The request
 * is sent unchanged but for `pageToken` (its own, if set, starts the walk). */
export async function* paginate<T>(
  call: PageCall,
  itemsField: string,
  request: Record<string, unknown>,
  options?: CallOptions,
): AsyncGenerator<T> {
  let pageToken = typeof request["pageToken"] === "string" ? (request["pageToken"] as string) : "";
  for (;;) {
    const page = await call({ ...request, pageToken }, options);
    for (const item of page[itemsField] as T[]) {
      yield item;
    }
    pageToken = page["nextPageToken"] as string;
    if (!pageToken) {
      return;
    }
  }
}
