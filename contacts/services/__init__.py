"""Every write to contacts, whichever door it comes through (API, admin, command, import).

Each write is validated (`cleaning`), runs in one transaction with its AuditLog row, and raises
Django's ValidationError keyed by field, which the API answers as a 400 and the admin shows on the
form: one contact (`contact`), many at once (`bulk`), CSV (`csv_io`), WhatsApp's webhooks
(`whatsapp`). Callers import the service they use from its module.
"""
