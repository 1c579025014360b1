"""``envleads dashboard``: a local web page over the current leads.

``api`` builds the JSON the page shows from a set of leads (pure functions, no HTTP), ``server``
serves it (a small WSGI application on waitress: one I/O thread for every connection and a fixed
pool of workers, a Host allow-list, timeouts, eviction and query caps; see its docstring for
``--allowed-host``, ``--workers``, ``--request-timeout`` and ``--max-connections``) and keeps the
leads current from the lead topic (or a leads file) in a background thread, and ``static/`` holds
the page itself: plain HTML, CSS and JavaScript drawing its charts and map as inline SVG, so
nothing is fetched from outside at run time.
"""
