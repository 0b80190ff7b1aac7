"""ContentService (DDS Content: banners, FAQs, terms, shown to customers) lives here:
servicer, convert, domain, queries, as every domain package. Not built yet: its RPCs
answer UNIMPLEMENTED (server/rpc/services.py registers the generated base servicer)."""
