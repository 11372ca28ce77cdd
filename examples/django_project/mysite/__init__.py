"""An example Django project served by aiogate."""
