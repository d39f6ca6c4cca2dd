"""Extensions, created unbound and attached to an app in `create_app` (Flask's app-factory pattern)."""

from flask_babel import Babel
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

babel = Babel()
csrf = CSRFProtect()
login_manager = LoginManager()
