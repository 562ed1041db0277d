"""Real exporters' metric names read as the role and occupancy a root-cause reader gives them.

Each row is a metric as a widely used exporter or instrumentation library names it (node
exporter, cAdvisor, kube-state-metrics, postgres, mysqld, redis, RabbitMQ and Kafka exporters,
JVM and Micrometer, the Go and Python clients, OpenTelemetry's semantic conventions as the
Prometheus exporter spells them, Envoy, nginx, HAProxy, gRPC), with only the labels that
say something (a timer's ``le``/``quantile``, a status), and what
:func:`~perfintel.analysis.rootcause.role_of` and
:func:`~perfintel.analysis.rootcause.is_occupancy` (descriptors held included, as the ranking
reads it by default) should say. The comment above each group says why. Entities and the
failure labels are :mod:`tests.analysis.test_rootcause_conventions`'s.
"""

from __future__ import annotations

import numpy as np
import pytest

from perfintel.analysis.rootcause import is_occupancy, rank_root_causes, role_of
from perfintel.analysis.signals import SeriesInput
from perfintel.model import label_set
from tests.analysis.rootcause_cases import GRID, N
from tests.analysis.rootcause_cases import T as INCIDENT

R, T, L, E, U = "resource", "traffic", "latency", "errors", ""
B = {"le": "0.5"}

#: (exporter, metric name, labels, role, occupancy)
TABLE: list[tuple[str, str, dict[str, str], str, bool]] = [
    # node exporter: a machine's CPU, memory, disks and NICs are resources; nothing there is
    # a count of things held but threads (memory's Active/Inactive page lists are bytes)
    ("node", "node_cpu_seconds_total", {"cpu": "0", "mode": "iowait"}, R, False),
    ("node", "node_load1", {}, R, False),
    ("node", "node_memory_MemAvailable_bytes", {}, R, False),
    ("node", "node_memory_Active_bytes", {}, R, False),
    ("node", "node_memory_Inactive_anon_bytes", {}, R, False),
    ("node", "node_filesystem_avail_bytes", {"mountpoint": "/"}, R, False),
    ("node", "node_filesystem_files_free", {"mountpoint": "/"}, R, False),
    ("node", "node_disk_io_time_seconds_total", {"device": "sda"}, R, False),
    ("node", "node_disk_io_time_weighted_seconds_total", {"device": "sda"}, R, False),
    ("node", "node_disk_read_time_seconds_total", {"device": "sda"}, R, False),
    ("node", "node_disk_reads_completed_total", {"device": "sda"}, R, False),
    ("node", "node_network_receive_bytes_total", {"device": "eth0"}, R, False),
    ("node", "node_processes_threads", {}, R, True),
    # node exporter: TCP connections opened are arrivals (load); connections established,
    # sockets in use and connections tracked are held; the sockets' memory is bytes
    ("node", "node_netstat_Tcp_ActiveOpens", {}, T, False),
    ("node", "node_netstat_Tcp_PassiveOpens", {}, T, False),
    ("node", "node_netstat_Tcp_CurrEstab", {}, R, True),
    ("node", "node_sockstat_TCP_inuse", {}, R, True),
    ("node", "node_sockstat_TCP_mem_bytes", {}, R, False),
    ("node", "node_nf_conntrack_entries", {}, R, True),
    # node exporter: a NIC's errors and drops are the device's trouble (a resource, a cause
    # of what follows), not requests failing
    ("node", "node_network_receive_errs_total", {"device": "eth0"}, R, False),
    ("node", "node_network_receive_drop_total", {"device": "eth0"}, R, False),
    ("node", "node_network_transmit_drop_total", {"device": "eth0"}, R, False),
    # node exporter: pressure stall information and scheduler waits are time tasks stalled on
    # a resource (CPU, memory, I/O): resource pressure, not how slow requests are
    ("node", "node_pressure_cpu_waiting_seconds_total", {}, R, False),
    ("node", "node_pressure_memory_waiting_seconds_total", {}, R, False),
    ("node", "node_pressure_memory_stalled_seconds_total", {}, R, False),
    ("node", "node_pressure_io_waiting_seconds_total", {}, R, False),
    ("node", "node_pressure_io_stalled_seconds_total", {}, R, False),
    ("node", "node_schedstat_waiting_seconds_total", {"cpu": "0"}, R, False),
    # node exporter: a kernel OOM kill is a failure; a clock or boot time says nothing
    ("node", "node_vmstat_oom_kill", {}, E, False),
    ("node", "node_boot_time_seconds", {}, U, False),
    ("node", "node_timex_offset_seconds", {}, U, False),
    # cAdvisor: a container's CPU, memory, disk and network are resources; threads, open
    # descriptors and sockets are held
    ("cadvisor", "container_cpu_usage_seconds_total", {}, R, False),
    ("cadvisor", "container_cpu_cfs_throttled_seconds_total", {}, R, False),
    ("cadvisor", "container_memory_working_set_bytes", {}, R, False),
    ("cadvisor", "container_memory_rss", {}, R, False),
    ("cadvisor", "container_fs_writes_bytes_total", {}, R, False),
    ("cadvisor", "container_network_transmit_bytes_total", {}, R, False),
    ("cadvisor", "container_network_receive_packets_dropped_total", {}, R, False),
    ("cadvisor", "container_threads", {}, R, True),
    ("cadvisor", "container_file_descriptors", {}, R, True),
    ("cadvisor", "container_sockets", {}, R, True),
    # cAdvisor, kube-state-metrics: an OOM or a restart is a failure
    ("cadvisor", "container_oom_events_total", {}, E, False),
    ("ksm", "kube_pod_container_status_restarts_total", {}, E, False),
    # OpenTelemetry hostmetrics (system.*): the machine's resources, as node exporter's; a
    # NIC's errors and drops are the device's, paging is memory's
    ("otel", "system_cpu_time_seconds_total", {"cpu": "cpu0", "state": "user"}, R, False),
    ("otel", "system_cpu_utilization_ratio", {"state": "user"}, R, False),
    ("otel", "system_cpu_load_average_1m", {}, R, False),
    ("otel", "system_memory_usage_bytes", {"state": "used"}, R, False),
    ("otel", "system_memory_utilization_ratio", {"state": "used"}, R, False),
    ("otel", "system_disk_io_bytes_total", {"direction": "read"}, R, False),
    ("otel", "system_disk_operations_total", {"direction": "read"}, R, False),
    ("otel", "system_disk_operation_time_seconds_total", {"direction": "read"}, R, False),
    ("otel", "system_disk_io_time_seconds_total", {}, R, False),
    ("otel", "system_filesystem_usage_bytes", {"state": "used"}, R, False),
    ("otel", "system_filesystem_utilization_ratio", {}, R, False),
    ("otel", "system_network_io_bytes_total", {"direction": "receive"}, R, False),
    ("otel", "system_network_packets_total", {"direction": "receive"}, R, False),
    ("otel", "system_network_errors_total", {"direction": "receive"}, R, False),
    ("otel", "system_network_dropped_total", {"direction": "receive"}, R, False),
    ("otel", "system_network_packet_dropped_total", {"network_io_direction": "receive"}, R, False),
    ("otel", "system_network_connections", {"protocol": "tcp", "state": "ESTABLISHED"}, R, True),
    ("otel", "system_paging_usage_bytes", {"state": "used"}, R, False),
    ("otel", "system_paging_faults_total", {"type": "major"}, R, False),
    ("otel", "system_paging_operations_total", {"direction": "page_in"}, R, False),
    # OpenTelemetry process.*: the process's resources; threads and descriptors are held
    ("otel", "process_cpu_time_seconds_total", {}, R, False),
    ("otel", "process_cpu_utilization_ratio", {}, R, False),
    ("otel", "process_memory_usage_bytes", {}, R, False),
    ("otel", "process_disk_io_bytes_total", {}, R, False),
    ("otel", "process_thread_count", {}, R, True),
    ("otel", "process_open_file_descriptor_count", {}, R, True),
    ("otel", "process_paging_faults_total", {}, R, False),
    # OpenTelemetry HTTP, RPC and database clients: a request timer is latency, its count
    # load; requests in flight are load held
    ("otel", "http_server_request_duration_seconds_bucket", B, L, False),
    ("otel", "http_server_request_duration_seconds_count", {}, T, False),
    ("otel", "http_client_request_duration_seconds_bucket", B, L, False),
    ("otel", "http_server_active_requests", {}, T, True),
    ("otel", "http_client_active_requests", {}, T, True),
    ("otel", "rpc_server_duration_milliseconds_bucket", B, L, False),
    ("otel", "db_client_operation_duration_seconds_bucket", B, L, False),
    # OpenTelemetry connection pools: connections in use and requests waiting for one are
    # held; the time spent waiting for or holding a connection is the pool's (a resource's)
    # time, and a time is no count of things held; timeouts are failures
    ("otel", "db_client_connection_count", {"db_client_connection_state": "used"}, R, True),
    ("otel", "db_client_connection_pending_requests", {}, R, True),
    ("otel", "db_client_connection_wait_time_seconds_bucket", B, R, False),
    ("otel", "db_client_connection_use_time_seconds_bucket", B, R, False),
    ("otel", "db_client_connection_timeouts_total", {}, E, False),
    ("otel", "http_client_open_connections", {"http_connection_state": "active"}, R, True),
    ("otel", "http_client_connection_duration_seconds_bucket", B, R, False),
    # garbage collection: a pause is the runtime's (memory's) work, whatever the timer is
    # called: Go's and OpenTelemetry's "duration", Micrometer's "pause", client_java's
    # "collection"; so is the Go scheduler's latency (goroutines waiting for a CPU)
    ("go", "go_gc_duration_seconds", {"quantile": "0.75"}, R, False),
    ("go", "go_gc_duration_seconds_count", {}, R, False),
    ("go", "go_gc_duration_seconds_sum", {}, R, False),
    ("go", "go_sched_latencies_seconds_bucket", B, R, False),
    ("otel", "jvm_gc_duration_seconds_bucket", B, R, False),
    ("micrometer", "jvm_gc_pause_seconds_count", {}, R, False),
    ("micrometer", "jvm_gc_pause_seconds_sum", {}, R, False),
    ("micrometer", "jvm_gc_pause_seconds_max", {}, R, False),
    ("jvm", "jvm_gc_collection_seconds_sum", {"gc": "G1 Young Generation"}, R, False),
    ("python", "python_gc_objects_collected_total", {"generation": "0"}, R, False),
    # Go and Python client runtimes: memory, CPU, goroutines and threads, descriptors
    ("go", "go_goroutines", {}, R, True),
    ("go", "go_threads", {}, R, True),
    ("go", "go_memstats_heap_alloc_bytes", {}, R, False),
    ("go", "go_memstats_heap_inuse_bytes", {}, R, False),
    ("go", "process_open_fds", {}, R, True),
    ("python", "process_resident_memory_bytes", {}, R, False),
    ("python", "process_cpu_seconds_total", {}, R, False),
    ("python", "process_start_time_seconds", {}, U, False),
    # JVM memory pools and buffer pools are memory (bytes), not pools of things held
    ("jvm", "jvm_memory_pool_bytes_used", {"pool": "G1 Eden Space"}, R, False),
    ("jvm", "jvm_buffer_pool_used_bytes", {"pool": "direct"}, R, False),
    ("micrometer", "jvm_memory_used_bytes", {"area": "heap"}, R, False),
    ("micrometer", "jvm_buffer_memory_used_bytes", {"id": "direct"}, R, False),
    ("micrometer", "jvm_threads_live_threads", {}, R, True),
    ("micrometer", "jvm_threads_states_threads", {"state": "blocked"}, R, True),
    ("micrometer", "process_cpu_usage", {}, R, False),
    ("micrometer", "system_load_average_1m", {}, R, False),
    ("micrometer", "process_files_open_files", {}, R, True),
    # Micrometer: a request timer; a pool's connections and an executor's threads and queue
    # are held, the time to acquire a connection is the pool's
    ("micrometer", "http_server_requests_seconds_count", {"status": "200"}, T, False),
    ("micrometer", "http_server_requests_seconds_max", {"status": "200"}, L, False),
    ("micrometer", "http_client_requests_seconds_bucket", B, L, False),
    ("micrometer", "hikaricp_connections_active", {"pool": "HikariPool-1"}, R, True),
    ("micrometer", "hikaricp_connections_pending", {"pool": "HikariPool-1"}, R, True),
    ("micrometer", "hikaricp_connections_acquire_seconds_count", {"pool": "HikariPool-1"}, R, False),
    ("micrometer", "hikaricp_connections_usage_seconds_sum", {"pool": "HikariPool-1"}, R, False),
    ("micrometer", "hikaricp_connections_timeout_total", {"pool": "HikariPool-1"}, E, False),
    ("micrometer", "tomcat_threads_busy_threads", {}, R, True),
    ("micrometer", "executor_active_threads", {"name": "task"}, R, True),
    ("micrometer", "executor_queued_tasks", {"name": "task"}, R, True),
    # PostgreSQL: server connections are held, transactions are load, a deadlock is a
    # failure, locks are contention on a resource, a replica's lag is a backlog (a resource
    # falling behind, in seconds: not held)
    ("postgres", "pg_stat_activity_count", {"state": "active"}, R, True),
    ("postgres", "pg_stat_database_numbackends", {"datname": "shop"}, R, True),
    ("postgres", "pg_stat_database_xact_commit", {"datname": "shop"}, T, False),
    ("postgres", "pg_stat_database_deadlocks", {"datname": "shop"}, E, False),
    ("postgres", "pg_locks_count", {"datname": "shop", "mode": "exclusivelock"}, R, False),
    ("postgres", "pg_replication_lag_seconds", {}, R, False),
    ("otel", "postgresql_backends", {}, R, True),
    ("otel", "postgresql_commits_total", {}, T, False),
    # pgbouncer: clients in a pool (active or waiting) are held; the longest wait is the
    # pool's time, not a request's latency
    ("pgbouncer", "pgbouncer_pools_client_active_connections", {"database": "shop"}, R, True),
    ("pgbouncer", "pgbouncer_pools_client_waiting_connections", {"database": "shop"}, R, True),
    ("pgbouncer", "pgbouncer_pools_client_maxwait_seconds", {"database": "shop"}, R, False),
    # MySQL: Connections counts connection attempts (load arriving, a counter) and
    # Aborted_connects the failed ones, while Threads_connected is the connections held;
    # row lock waits and times are contention on a resource; queries and commands are load
    ("mysqld", "mysql_global_status_connections", {}, T, False),
    ("mysqld", "mysql_global_status_aborted_connects", {}, E, False),
    ("mysqld", "mysql_global_status_threads_connected", {}, R, True),
    ("mysqld", "mysql_global_status_threads_running", {}, R, True),
    ("mysqld", "mysql_global_status_max_used_connections", {}, R, True),
    ("mysqld", "mysql_global_status_innodb_row_lock_waits", {}, R, False),
    ("mysqld", "mysql_global_status_innodb_row_lock_time", {}, R, False),
    ("mysqld", "mysql_global_status_buffer_pool_pages", {"state": "data"}, R, False),
    ("mysqld", "mysql_global_status_commands_total", {"command": "select"}, T, False),
    ("mysqld", "mysql_global_status_queries", {}, T, False),
    # Redis: clients connected are held, connections received are arrivals (load) and those
    # rejected failures; commands are load and their time latency; evictions are memory's
    ("redis", "redis_connected_clients", {}, R, True),
    ("redis", "redis_connections_received_total", {}, T, False),
    ("redis", "redis_rejected_connections_total", {}, E, False),
    ("redis", "redis_commands_processed_total", {}, T, False),
    ("redis", "redis_commands_total", {"cmd": "get"}, T, False),
    ("redis", "redis_commands_duration_seconds_total", {"cmd": "get"}, L, False),
    ("redis", "redis_memory_used_bytes", {}, R, False),
    ("redis", "redis_evicted_keys_total", {}, R, False),
    ("otel", "redis_clients_connected", {}, R, True),
    # nginx stub_status: connections open (reading, writing or waiting: idle keep-alives)
    # are held, connections accepted or handled are arrivals; the ingress controller's
    # requests and their duration
    ("nginx", "nginx_connections_active", {}, R, True),
    ("nginx", "nginx_connections_waiting", {}, R, True),
    ("nginx", "nginx_connections_reading", {}, R, True),
    ("nginx", "nginx_connections_accepted", {}, T, False),
    ("nginx", "nginx_connections_handled", {}, T, False),
    ("nginx", "nginx_http_requests_total", {}, T, False),
    ("nginx", "nginx_ingress_controller_requests", {"status": "503"}, E, False),
    ("nginx", "nginx_ingress_controller_requests", {"status": "200"}, T, False),
    ("nginx", "nginx_ingress_controller_request_duration_seconds_bucket", B, L, False),
    # HAProxy: sessions and queues open are held, sessions and connections counted are
    # arrivals, the time in the queue is the queue's
    ("haproxy", "haproxy_frontend_http_requests_total", {}, T, False),
    ("haproxy", "haproxy_backend_http_responses_total", {"code": "5xx"}, E, False),
    ("haproxy", "haproxy_backend_current_sessions", {}, R, True),
    ("haproxy", "haproxy_backend_current_queue", {}, R, True),
    ("haproxy", "haproxy_backend_sessions_total", {}, T, False),
    ("haproxy", "haproxy_frontend_connections_total", {}, T, False),
    ("haproxy", "haproxy_backend_connection_errors_total", {}, E, False),
    ("haproxy", "haproxy_backend_response_time_average_seconds", {}, L, False),
    ("haproxy", "haproxy_backend_queue_time_average_seconds", {}, R, False),
    # Envoy: requests and their time; connections open are held, connections counted are
    # arrivals; a connect failure and a pending-queue overflow (the circuit breaker) fail
    ("envoy", "envoy_cluster_upstream_rq_total", {}, T, False),
    ("envoy", "envoy_cluster_upstream_rq_time_bucket", B, L, False),
    ("envoy", "envoy_cluster_upstream_cx_active", {}, R, True),
    ("envoy", "envoy_cluster_upstream_cx_total", {}, T, False),
    ("envoy", "envoy_cluster_upstream_cx_connect_fail", {}, E, False),
    ("envoy", "envoy_cluster_upstream_cx_connect_ms_bucket", B, R, False),
    ("envoy", "envoy_cluster_upstream_rq_pending_overflow", {}, E, False),
    ("envoy", "envoy_http_downstream_cx_active", {}, R, True),
    ("envoy", "envoy_server_memory_allocated", {}, R, False),
    # gRPC (go-grpc-prometheus): calls started and handled are load, their time latency
    ("grpc", "grpc_server_started_total", {}, T, False),
    ("grpc", "grpc_server_handled_total", {"grpc_code": "OK"}, T, False),
    ("grpc", "grpc_server_msg_received_total", {}, T, False),
    ("grpc", "grpc_server_handling_seconds_bucket", B, L, False),
    ("grpc", "grpc_client_started_total", {}, T, False),
    ("grpc", "grpc_client_handling_seconds_bucket", B, L, False),
    # RabbitMQ: messages ready or unacknowledged are a queue held; messages published,
    # received or delivered are load; connections open are held, connections opened arrivals
    ("rabbitmq", "rabbitmq_queue_messages_ready", {"queue": "orders"}, R, True),
    ("rabbitmq", "rabbitmq_queue_messages_unacked", {"queue": "orders"}, R, True),
    ("rabbitmq", "rabbitmq_queue_messages_published_total", {"queue": "orders"}, T, False),
    ("rabbitmq", "rabbitmq_global_messages_received_total", {}, T, False),
    ("rabbitmq", "rabbitmq_global_messages_delivered_total", {}, T, False),
    ("rabbitmq", "rabbitmq_connections", {}, R, True),
    ("rabbitmq", "rabbitmq_connections_opened_total", {}, T, False),
    ("rabbitmq", "rabbitmq_process_open_fds", {}, R, True),
    ("rabbitmq", "rabbitmq_resident_memory_limit_bytes", {}, R, False),
    # Kafka: a consumer group's lag is a backlog held (in messages); messages in are load
    ("kafka", "kafka_consumergroup_lag", {"consumergroup": "billing"}, R, True),
    ("kafka", "kafka_consumergroup_lag_sum", {"consumergroup": "billing"}, R, True),
    ("otel", "kafka_consumer_group_lag", {"group": "billing"}, R, True),
    ("micrometer", "kafka_consumer_fetch_manager_records_lag", {}, R, True),
    ("kafka", "kafka_server_brokertopicmetrics_messagesin_total", {}, T, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "labels", "role", "occupancy"),
    [pytest.param(*row[1:], id=f"{row[0]}:{row[1]}") for row in TABLE],
)
def test_exporter_names_read_as_a_root_cause_reader_reads_them(
    name: str, labels: dict[str, str], role: str, occupancy: bool
) -> None:
    ls = label_set({**labels, "__name__": name})
    assert (role_of(ls), is_occupancy(ls, held=True)) == (role, occupancy)


def _step(level: float, size: float, at: int, sd: float, seed: int) -> np.ndarray:
    return level + (np.arange(N) >= at) * size + np.random.default_rng(seed).normal(0, sd, N)


def test_a_go_services_gc_pauses_rank_before_the_latency_they_cause() -> None:
    """A Go pod's GC pauses (``go_gc_duration_seconds``, as the client exposes them) and its
    request p99 rise in the same minute, the p99 by more sigmas. Inside one workload a
    resource comes before latency; read as latency (its "duration"), the GC pause would be
    one more latency, and the larger change, the p99, would rank first."""
    pod = {"namespace": "shop", "pod": "api-1", "instance": "10.0.0.1:8080", "job": "api"}
    at = 205
    series = [
        SeriesInput(
            label_set({**pod, "__name__": "http_request_duration_seconds", "quantile": "0.99"}),
            _step(0.12, 0.4, at, 0.01, 1),
        ),
        SeriesInput(
            label_set({**pod, "__name__": "go_gc_duration_seconds", "quantile": "0.75"}),
            _step(0.002, 0.004, at, 0.0002, 2),
        ),
    ]
    causes = rank_root_causes(
        INCIDENT, series, GRID, window_ms=30 * 60_000, baseline_ms=180 * 60_000
    )
    assert [c.index for c in causes[:2]] == [1, 0]
