"""One exception root for the project; leaves are one line each."""


class DetectorError(Exception):
    """Root of every error the detector raises on purpose."""


class ConfigError(DetectorError):
    """A setting is missing, unknown or has a wrong value; the message names it."""


class InputFileError(DetectorError):
    """A file given on the command line cannot be read."""


class ServiceUnavailable(DetectorError):
    """A service the detector depends on did not answer; the caller retries with backoff."""


class RedisUnavailable(ServiceUnavailable):
    """Redis did not answer, or replied that it cannot work now (OOM, READONLY, ...)."""


class KafkaUnavailable(ServiceUnavailable):
    """The Kafka broker did not answer, or did not acknowledge what was sent."""


class AlertmanagerUnavailable(ServiceUnavailable):
    """No Alertmanager took the pages."""


class EmbeddedServerError(DetectorError):
    """An embedded redis-server or broker could not be started."""


class BenchError(DetectorError):
    """A benchmark step could not be measured (a worker died, a run did not finish)."""
