"""``envleads dashboard``: a local web page over the current leads.

``api`` builds the JSON the page shows from a set of leads (pure functions, no HTTP), ``server``
serves it with the standard library's threaded HTTP server and keeps the leads current from the
lead topic (or a leads file) in a background thread, and ``static/`` holds the page itself: plain
HTML, CSS and JavaScript drawing its charts and map as inline SVG, so nothing is fetched from
outside at run time.
"""
