"""Services of the web app that are not views: queries and file handling. No Flask here (like engine/):
they take the session and collaborators as arguments, flush, and never commit."""
