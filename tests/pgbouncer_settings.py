"""Settings of the demo behind PgBouncer in transaction mode, as Django's docs advise for it.

``DISABLE_SERVER_SIDE_CURSORS``: a server-side cursor outlives the
transaction PgBouncer gives the connection for (Django's databases docs,
"Transaction pooling and server-side cursors").
"""

from testproject.settings import *  # noqa: F403

DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True  # noqa: F405
