"""Plans and offers: the catalogue (plan groups, plans, offer types, offers)."""
