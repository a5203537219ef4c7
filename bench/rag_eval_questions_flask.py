# ruff: noqa: E501 -- one question per line reads better than wrapped prose.
"""Questions for bench/rag_eval.py on the Flask documentation (Debian's python-flask-doc,
/usr/share/doc/python-flask-doc/html).

Written from the pages, before any retrieval result was seen, the way people ask them, not
copied from headings. Each lists the pages that answer it: a hit on any of them counts. Pages are
paths relative to the corpus folder (api.html, the reference of every object, is accepted where
the question names the object it documents).
"""

from __future__ import annotations

QUESTIONS: list[tuple[str, list[str]]] = [
    ("how do I read ?page=2 from the URL in my view", ["quickstart.html", "api.html"]),
    ("let users upload a picture through a form and save it on the server", ["patterns/fileuploads.html", "quickstart.html"]),
    ("reject uploads that are bigger than a few megabytes", ["patterns/fileuploads.html", "config.html"]),
    ("show a message like 'saved!' on the next page after a redirect", ["patterns/flashing.html", "quickstart.html"]),
    ("return my own page instead of the default Not Found error", ["errorhandling.html", "quickstart.html"]),
    ("my app.py is getting too big, how do I split routes into several modules?", ["blueprints.html", "patterns/packages.html"]),
    ("create the app inside a function so tests can build it with different settings", ["patterns/appfactories.html", "tutorial/factory.html"]),
    ("use different settings in development and production", ["config.html"]),
    ("how do I generate a good SECRET_KEY?", ["quickstart.html", "config.html", "tutorial/deploy.html"]),
    ("test my views without starting a real server", ["testing.html", "tutorial/tests.html"]),
    ("run the app in production with gunicorn", ["deploying/gunicorn.html"]),
    ("behind nginx request.remote_addr is always 127.0.0.1 and url_for builds http links", ["deploying/proxy_fix.html", "deploying/nginx.html"]),
    ("RuntimeError: Working outside of application context", ["appcontext.html"]),
    ("keep the database connection for the current request somewhere any function can reach it", ["appcontext.html", "patterns/sqlite3.html", "tutorial/database.html"]),
    ("set a cookie from a function that runs before the response object exists", ["patterns/deferredcallbacks.html"]),
    ("can my view functions be async def?", ["async-await.html"]),
    ("send a very large CSV to the client as it is generated instead of building it in memory", ["patterns/streaming.html"]),
    ("open a sqlite database connection per request and close it when the request ends", ["patterns/sqlite3.html", "tutorial/database.html"]),
    ("use SQLAlchemy models in my Flask app", ["patterns/sqlalchemy.html"]),
    ("add my own command like 'flask init-db' to the command line", ["cli.html", "tutorial/database.html"]),
    ("reload the server automatically when I edit code and show the interactive debugger", ["server.html", "debugging.html", "quickstart.html", "cli.html"]),
    ("share a common layout with header and footer across all my templates", ["patterns/templateinheritance.html", "templating.html", "tutorial/templates.html"]),
    ("make a helper function or filter available in every Jinja template", ["templating.html"]),
    ("cache the output of a slow view", ["patterns/caching.html"]),
    ("redirect to the login page unless the user is logged in, for several views", ["patterns/viewdecorators.html", "tutorial/views.html"]),
    ("write a REST resource as a class with get and post methods", ["views.html"]),
    ("which HTTP headers should I set to make my app more secure?", ["security.html"]),
    ("email me the traceback whenever the production app has an error", ["logging.html", "errorhandling.html"]),
    ("browsers request /favicon.ico, how do I serve one?", ["patterns/favicon.html"]),
    ("call a view from JavaScript with fetch and send JSON back", ["patterns/javascript.html", "patterns/jquery.html"]),
    ("serve two separate Flask applications from one process under different URL prefixes", ["patterns/appdispatch.html"]),
    ("validate form input with WTForms", ["patterns/wtforms.html"]),
    ("get notified every time a template is rendered", ["signals.html"]),
    ("install Flask in a virtual environment", ["installation.html"]),
    ("put the language code at the start of every URL without passing it to each view", ["patterns/urlprocessors.html"]),
    ("run slow jobs in the background with Celery", ["patterns/celery.html"]),
    ("serve a React single page app for every route", ["patterns/singlepageapplications.html"]),
    ("open an interactive Python shell with my app loaded", ["shell.html", "cli.html"]),
    ("HTML forms can only send GET and POST, how do I make a PUT or DELETE request?", ["patterns/methodoverrides.html"]),
    ("I want to publish a reusable Flask extension, how should it be structured?", ["extensiondev.html"]),
]  # fmt: skip
