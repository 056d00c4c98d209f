"""The dispatcher's parts: handler calls bounded in time (:mod:`.calls`, :mod:`.threads`),
backoff (:mod:`.backoff`) and the store's health as the dispatcher sees it (:mod:`.store_outage`).
:mod:`callbacks.dispatcher` puts them together; :mod:`.listener` is ``callbacks dispatch
--listen``'s health and metrics endpoint."""
