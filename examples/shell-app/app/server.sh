#!/bin/sh
# The app. Like a Python or Node server it loads its code and config once, when it starts.
. /app/config.sh
mkdir -p /tmp/www
printf '<p>%s</p>\n' "$MESSAGE" >/tmp/www/index.html
echo "shell-app: serving on :8080: $MESSAGE"
exec httpd -f -p 8080 -h /tmp/www
