#!/bin/sh
# Creates BUCKET on the S3-compatible store at S3_ENDPOINT unless it exists
# (amazon/aws-cli; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).
set -eu
: "${S3_ENDPOINT:?}" "${BUCKET:?}"
if aws --endpoint-url "$S3_ENDPOINT" s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
	echo "s3-bucket: $BUCKET exists"
else
	aws --endpoint-url "$S3_ENDPOINT" s3api create-bucket --bucket "$BUCKET"
	echo "s3-bucket: created $BUCKET"
fi
