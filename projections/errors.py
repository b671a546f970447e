"""Errors of the projections (the KeepinCRM client has its own tree)."""


class ProjectionError(Exception):
    """Base of every error the projections raise."""


class DealMappingError(ProjectionError):
    """An order that cannot become a deal; names the site, the order and the field.

    The order is parked with this message as its reason, never dropped.
    """

    def __init__(self, site: str, order_id: int, field: str, reason: str) -> None:
        super().__init__(f"site {site} order {order_id} field {field}: {reason}")
        self.site = site
        self.order_id = order_id
        self.field = field
        self.reason = reason
