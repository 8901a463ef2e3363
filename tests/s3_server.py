"""A real S3-compatible server on loopback for the tests: moto's `ThreadedMotoServer`.

It runs as its own process and speaks the S3 REST API over HTTP, including conditional writes (`If-None-Match: *` is
refused with 412 once the key exists), which is what delta-rs 1.x commits with on S3. The
credentials are throwaway values the server accepts; the secret key doubles as a canary that
must never appear in logs, metadata, errors or Ray task arguments.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace

from tests.local_servers import free_port, wait_until_listening

ACCESS_KEY = "ray-assets-test-key"
SECRET_KEY = "canary-S3-secret-5b1d0c7e"  # a throwaway credential of the local server
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    @property
    def storage_options(self) -> dict[str, str]:
        """delta-rs storage options (also what the Ray tasks' pyarrow filesystem is made from)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])

    def client(self):  # noqa: ANN201 - boto3's client type is generated
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
        )


@contextlib.contextmanager
def running_server(bucket: str = "lake", *, check_credentials: bool = False) -> Iterator[S3Server]:
    """Start the server in its own process on a free loopback port, with one bucket; stop it at
    the end. (In the test process, its threads would wait for the GIL while a delta-rs call
    that holds it waits for them.)

    With `check_credentials`, the server verifies every request's signature against a user it
    knows (moto's IAM emulation): the first three requests, unauthenticated, create that user,
    its policy and its access key, which the returned server's credentials then are.
    """
    port = free_port()
    environment = dict(os.environ)
    if check_credentials:
        environment["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
    )
    try:
        running = S3Server(endpoint=f"http://127.0.0.1:{port}", bucket=bucket)
        wait_until_listening(port, process, log, "the S3 server")
        if check_credentials:
            running = _with_a_known_user(running)
        running.client().create_bucket(Bucket=bucket)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _with_a_known_user(server: S3Server) -> S3Server:
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=server.endpoint,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
        region_name=REGION,
    )
    iam.create_user(UserName="lake-writer")
    iam.put_user_policy(
        UserName="lake-writer",
        PolicyName="everything",
        PolicyDocument='{"Version": "2012-10-17", "Statement": '
        '[{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
    )
    key = iam.create_access_key(UserName="lake-writer")["AccessKey"]
    return replace(server, access_key=key["AccessKeyId"], secret_key=key["SecretAccessKey"])
