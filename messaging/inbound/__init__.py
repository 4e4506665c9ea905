"""Meta's webhooks in: the view, the events queue, the payload readers and what applies them."""
