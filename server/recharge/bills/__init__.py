"""Postpaid bill reminders (DDS BillReminders): servicer (ListBillReminders, PayBill),
convert, domain, flows (PayBill's steps, the scheduler's reminder job) and queries (the
only SQL on ``billreminders``)."""
