"""Errors of the daemon: settings, capture from shops, the run loop."""


class DaemonError(Exception):
    """Base of every error the daemon package raises."""


class SettingsError(DaemonError):
    """The settings file is missing, malformed or names something that is not."""


class ShopUnavailable(DaemonError):
    """A shop's database cannot be reached or answered with an error."""

    def __init__(self, site: str, reason: str) -> None:
        super().__init__(f"site {site}: shop database unavailable: {reason}")
        self.site = site
        self.reason = reason


class UnsupportedShop(ShopUnavailable):
    """A shop's database holds a schema ocsync cannot read (e.g. OpenCart 4.x)."""

    def __init__(self, site: str, reason: str) -> None:
        DaemonError.__init__(self, f"site {site}: {reason}")
        self.site = site
        self.reason = reason


class ShopDataError(DaemonError):
    """A shop's row that cannot be read as OpenCart data; names site, order, field."""

    def __init__(self, site: str, order_id: int, field: str, reason: str) -> None:
        super().__init__(f"site {site} order {order_id} field {field}: {reason}")
        self.site = site
        self.order_id = order_id
        self.field = field
        self.reason = reason
