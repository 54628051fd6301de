"""The central's live web dashboard: a read-only JSON API and the page that polls it.

``--web ENDPOINT`` serves it (L{redesdl.central.web.site}); the answers are
read from the central's live state (L{redesdl.central.web.api}), plus the few
things the central would otherwise forget at once, kept in bounded lists
(L{redesdl.central.web.observed}) and sampled every 2 s
(L{redesdl.central.web.series}).
"""
