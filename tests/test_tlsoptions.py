"""The TLS options every program takes: all three, each naming a file, or none."""

from __future__ import annotations

import pytest

from redesdl.tlsoptions import TLSFileError, tls_from_options


def test_no_tls_option_means_plain_tcp() -> None:
    assert tls_from_options({"tls-ca": None, "tls-cert": None, "tls-key": None}) is None


@pytest.mark.parametrize(
    "given",
    [
        {"tls-ca": "ca.pem"},
        {"tls-ca": "ca.pem", "tls-cert": "me.pem"},
        # An unset shell variable: it used to mean plain TCP, unnoticed.
        {"tls-ca": "", "tls-cert": "", "tls-key": ""},
        {"tls-ca": "ca.pem", "tls-cert": "me.pem", "tls-key": ""},
    ],
)
def test_some_or_empty_tls_options_are_refused(given: dict[str, str]) -> None:
    options = {"tls-ca": None, "tls-cert": None, "tls-key": None, **given}
    with pytest.raises(TLSFileError, match="go together, each naming a file"):
        tls_from_options(options)
