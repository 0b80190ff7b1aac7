"""ContentService (DDS Content: FAQs, guides, policies shown to customers; ContactForm:
the public contact form): servicer, convert, flows, domain, queries, as every domain
package, plus cache.py, the per-process cache of the public reads."""
