// The HTTP server: an accept loop and one session per connection, all on one io_context.
//
// A session runs on its own strand. Everything that touches a connection's state (the socket,
// the write queue, the request's callbacks) happens on that strand; response_writer calls from
// other threads are posted there. A request carries a sequence number, so a writer that outlives
// its request cannot touch the next one on the same keep-alive connection.

#include "runtime/http/http_server.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include <sys/socket.h>
#include <cerrno>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace troupe {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view to_std(beast::string_view s) noexcept { return {s.data(), s.size()}; }

http_response default_error_response(int status, std::string message) {
  nlohmann::json body = {{"error", {{"message", std::move(message)}, {"code", status}}}};
  return {status, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
          "application/json", {}};
}

// SSE framing: one "data:" line per line of the payload, then a blank line.
void append_sse_event(std::string& out, std::string_view data) {
  size_t start = 0;
  while (true) {
    const size_t nl = data.find('\n', start);
    out += "data: ";
    out.append(data.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    out += '\n';
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  out += '\n';
}

}  // namespace

std::string_view http_request::path() const noexcept {
  const std::string_view t = target;
  return t.substr(0, t.find('?'));
}

std::string_view http_request::header(std::string_view name) const noexcept {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return v;
  }
  return {};
}

class session;

struct http_server::impl : std::enable_shared_from_this<impl> {
  http_server_options options;
  http_handler handler;
  net::io_context ioc;  // declared before the acceptor and timer, which need it to close
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  // The accept loop, its retry timer and stop()'s close share one strand.
  net::strand<net::io_context::executor_type> accept_strand{ioc.get_executor()};
  tcp::acceptor acceptor{accept_strand};
  net::steady_timer accept_retry{accept_strand};
  std::vector<std::thread> threads;
  uint16_t port = 0;

  std::atomic<bool> stopping{false};
  std::atomic<bool> joined{false};  // io threads are gone: posting would never run
  std::mutex stop_mu;

  std::mutex sessions_mu;
  std::condition_variable sessions_cv;
  std::unordered_map<uint64_t, std::weak_ptr<session>> sessions;
  uint64_t next_session = 0;

  void accept();
  /// Drops a closed session from the registry (idempotent); stop() waits for it to empty.
  void forget(uint64_t id) {
    std::lock_guard lock(sessions_mu);
    if (sessions.erase(id)) sessions_cv.notify_all();
  }
  void on_accept(beast::error_code ec, tcp::socket socket);
  /// Posts f to every live session's strand.
  template <class F>
  void for_each_session(F f);
};

// ---------------------------------------------------------------------------------------------

class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket socket, std::shared_ptr<http_server::impl> server, uint64_t id)
      : server_(std::move(server)), id_(id), stream_(std::move(socket)) {}

  ~session() { server_->forget(id_); }

  void start() {
    beast::error_code ec;
    stream_.socket().set_option(tcp::no_delay(true), ec);  // SSE events go out as they come
    const auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string() + ":" + std::to_string(ep.port());
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_header(); });
  }

  /// Runs f on this connection's strand, unless the server's threads are gone.
  template <class F>
  void post(F&& f) {
    if (server_->joined.load()) return;
    net::post(stream_.get_executor(), std::forward<F>(f));
  }

  // -- called on the strand, from response_writer (through post) and from the server --

  void send(uint64_t seq, http_response r);
  void start_stream(uint64_t seq, int status, http_headers headers);
  void event(uint64_t seq, std::string data);
  void close_stream(uint64_t seq);
  void set_on_disconnect(uint64_t seq, std::function<void()> cb);
  void abandon(uint64_t seq);
  void drain();
  void force_close();

  bool disconnected() const noexcept { return disconnected_.load(); }

 private:
  enum class state { reading, handling, writing, streaming, lingering, closed };

  void read_header();
  void on_header(beast::error_code ec);
  void read_body();
  void on_body(beast::error_code ec);
  void dispatch_request();
  void watch_peer();
  void on_peer_readable(uint64_t seq, beast::error_code ec);
  void flush();
  void on_written(beast::error_code ec);
  void finish_response();
  void fail_request(int status, std::string message);
  void mark_disconnected();
  void close_socket();
  void linger_close();
  void linger_read();
  void write_response(bhttp::response<bhttp::string_body> res);
  bool current(uint64_t seq) const noexcept { return seq == seq_; }

  std::shared_ptr<http_server::impl> server_;  // first: the io_context outlives the socket
  uint64_t id_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::string remote_;

  state state_ = state::reading;
  uint64_t seq_ = 0;  // the current request's number
  bool keep_alive_ = true;
  bool draining_ = false;
  bool watching_ = false;
  std::atomic<bool> disconnected_{false};
  std::function<void()> on_disconnect_;

  // Writes: one outstanding at a time; events queue up behind it and go out as one chunk.
  bool writing_ = false;
  bool close_requested_ = false;  // stream: send the last chunk once the queue is empty
  bool last_chunk_sent_ = false;
  std::string pending_;  // framed events not yet written
  std::string inflight_;  // the chunk being written
  std::shared_ptr<bhttp::response<bhttp::string_body>> res_;
  std::shared_ptr<bhttp::response<bhttp::empty_body>> stream_head_;
  std::shared_ptr<bhttp::response_serializer<bhttp::empty_body>> stream_sr_;
  std::array<char, 4096> discard_{};
};

class writer_impl final : public response_writer {
 public:
  writer_impl(std::shared_ptr<session> s, uint64_t seq) : s_(std::move(s)), seq_(seq) {}
  ~writer_impl() override {
    s_->post([s = s_, seq = seq_] { s->abandon(seq); });
  }
  void send(http_response response) override {
    s_->post([s = s_, seq = seq_, r = std::move(response)]() mutable { s->send(seq, std::move(r)); });
  }
  void start_stream(int status, http_headers headers) override {
    s_->post([s = s_, seq = seq_, status, h = std::move(headers)]() mutable {
      s->start_stream(seq, status, std::move(h));
    });
  }
  void send_event(std::string data) override {
    s_->post([s = s_, seq = seq_, d = std::move(data)]() mutable { s->event(seq, std::move(d)); });
  }
  void close() override {
    s_->post([s = s_, seq = seq_] { s->close_stream(seq); });
  }
  void on_disconnect(std::function<void()> callback) override {
    s_->post([s = s_, seq = seq_, cb = std::move(callback)]() mutable {
      s->set_on_disconnect(seq, std::move(cb));
    });
  }
  bool disconnected() const noexcept override { return s_->disconnected(); }

 private:
  std::shared_ptr<session> s_;
  uint64_t seq_;
};

void session::read_header() {
  if (draining_) return close_socket();
  state_ = state::reading;
  parser_.emplace();
  parser_->body_limit(server_->options.max_body_bytes);
  parser_->header_limit(static_cast<uint32_t>(server_->options.max_header_bytes));
  // Before the first byte this is the keep-alive idle time; it also bounds a slow header.
  stream_.expires_after(server_->options.idle_timeout);
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           [self = shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
}

/// A parse error of the request itself (as opposed to EOF, a reset or a timeout, which end the
/// connection without an answer).
static bool is_malformed(beast::error_code ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category() &&
         ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message;
}

void session::on_header(beast::error_code ec) {
  if (ec == bhttp::error::body_limit) return fail_request(413, "request body too large");
  if (ec == bhttp::error::header_limit) return fail_request(431, "request header too large");
  if (ec) {
    // EOF, reset or timeout while idle is the normal end of a keep-alive connection; a parse
    // error gets a 400 before closing.
    if (is_malformed(ec)) return fail_request(400, "malformed HTTP request: " + ec.message());
    return close_socket();
  }
  const auto& req = parser_->get();
  if (iequals(to_std(req[bhttp::field::expect]), "100-continue")) {
    // curl and others wait for this before sending a large body.
    static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
    net::async_write(stream_, net::buffer(cont.data(), cont.size()),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->close_socket();
                       self->read_body();
                     });
    return;
  }
  read_body();
}

void session::read_body() {
  stream_.expires_after(server_->options.read_timeout);
  bhttp::async_read(stream_, buffer_, *parser_,
                    [self = shared_from_this()](beast::error_code ec, size_t) { self->on_body(ec); });
}

void session::on_body(beast::error_code ec) {
  if (ec == bhttp::error::body_limit) return fail_request(413, "request body too large");
  // A body that breaks the framing (a bad chunk size, chunk extensions past the limit) gets its
  // 400 like a bad header does (issue 11: it used to close the connection without an answer).
  if (ec && is_malformed(ec)) return fail_request(400, "malformed HTTP request body: " + ec.message());
  if (ec) return close_socket();
  dispatch_request();
}

void session::dispatch_request() {
  auto& msg = parser_->get();
  http_request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  for (const auto& f : msg) req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  req.body = std::move(msg.body());
  req.remote = remote_;
  keep_alive_ = msg.keep_alive();
  parser_.reset();

  ++seq_;
  state_ = state::handling;
  close_requested_ = last_chunk_sent_ = false;
  on_disconnect_ = nullptr;
  stream_.expires_never();  // the handler may take its time (queueing, prefill)
  watch_peer();
  auto writer = std::make_shared<writer_impl>(shared_from_this(), seq_);
  try {
    server_->handler(req, std::move(writer));
  } catch (...) {
    // The writer's destructor has posted abandon(), which answers 500 if nothing was sent.
  }
}

// Waits for the socket to become readable while a request is served: readable with no bytes is
// EOF or a reset, i.e. the client went away. Bytes mean a pipelined request; those are left for
// the next read, and the watch ends.
void session::watch_peer() {
  if (watching_) return;
  watching_ = true;
  stream_.socket().async_wait(tcp::socket::wait_read,
                              [self = shared_from_this(), seq = seq_](beast::error_code ec) {
                                self->on_peer_readable(seq, ec);
                              });
}

void session::on_peer_readable(uint64_t seq, beast::error_code ec) {
  if (!current(seq)) return;  // a watch cancelled by finish_response; a newer one may be armed
  watching_ = false;
  if (ec || state_ == state::reading || state_ == state::closed) return;
  // Readiness can be stale (an edge for bytes the request read already consumed), so peek:
  // 0 is EOF, EAGAIN is nothing yet (watch again), bytes are a pipelined request.
  char byte = 0;
  const ssize_t n = ::recv(stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return;
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return watch_peer();
  // The whole response may be written already, with its completion queued behind this one on
  // the strand (the client read it and hung up): let that completion decide, so a finished
  // request is not reported as cancelled.
  if (writing_ && (state_ == state::writing || last_chunk_sent_)) return;
  mark_disconnected();
}

void session::mark_disconnected() {
  if (disconnected_.exchange(true)) return;
  auto cb = std::move(on_disconnect_);
  on_disconnect_ = nullptr;
  close_socket();
  if (cb) cb();
}

void session::set_on_disconnect(uint64_t seq, std::function<void()> cb) {
  if (!current(seq) || !cb) return;
  if (disconnected_.load()) {
    // Only a request that was still being served is cancelled.
    if (state_ != state::reading) cb();
    return;
  }
  if (state_ == state::handling || state_ == state::writing || state_ == state::streaming)
    on_disconnect_ = std::move(cb);
}

void session::write_response(bhttp::response<bhttp::string_body> res) {
  res_ = std::make_shared<bhttp::response<bhttp::string_body>>(std::move(res));
  state_ = state::writing;
  writing_ = true;
  stream_.expires_after(server_->options.write_timeout);
  bhttp::async_write(stream_, *res_, [self = shared_from_this()](beast::error_code ec, size_t) {
    self->writing_ = false;
    self->res_.reset();
    if (ec) return self->mark_disconnected();
    self->finish_response();
  });
}

void session::send(uint64_t seq, http_response r) {
  if (!current(seq) || state_ != state::handling || disconnected_) return;
  bhttp::response<bhttp::string_body> res;
  res.version(11);
  res.result(static_cast<unsigned>(r.status));
  res.set(bhttp::field::server, "troupe");
  res.set(bhttp::field::content_type, r.content_type);
  for (auto& [k, v] : r.headers) res.insert(k, v);
  res.body() = std::move(r.body);
  res.keep_alive(keep_alive_ && !draining_);
  res.prepare_payload();
  write_response(std::move(res));
}

void session::start_stream(uint64_t seq, int status, http_headers headers) {
  if (!current(seq) || state_ != state::handling || disconnected_) return;
  state_ = state::streaming;
  stream_head_ = std::make_shared<bhttp::response<bhttp::empty_body>>();
  auto& h = *stream_head_;
  h.version(11);
  h.result(static_cast<unsigned>(status));
  h.set(bhttp::field::server, "troupe");
  h.set(bhttp::field::content_type, "text/event-stream");
  h.set(bhttp::field::cache_control, "no-cache");
  h.set("X-Accel-Buffering", "no");  // nginx in front must not buffer the stream
  for (auto& [k, v] : headers) h.insert(k, v);
  h.keep_alive(keep_alive_ && !draining_);
  h.chunked(true);
  stream_sr_ = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(h);
  writing_ = true;
  stream_.expires_after(server_->options.write_timeout);
  bhttp::async_write_header(stream_, *stream_sr_, [self = shared_from_this()](beast::error_code ec, size_t) {
    self->on_written(ec);
  });
}

void session::event(uint64_t seq, std::string data) {
  if (!current(seq) || state_ != state::streaming || close_requested_ || disconnected_) return;
  append_sse_event(pending_, data);
  flush();
}

void session::close_stream(uint64_t seq) {
  if (!current(seq) || disconnected_) return;
  if (state_ == state::handling) return fail_request(500, "the handler closed without a response");
  if (state_ != state::streaming || close_requested_) return;
  close_requested_ = true;
  flush();
}

void session::abandon(uint64_t seq) {
  if (!current(seq) || disconnected_) return;
  // A handler that dropped its writer without answering gets a 500, and a stream it did not
  // close is ended, so the client is not left waiting.
  if (state_ == state::handling) return fail_request(500, "the request was dropped without a response");
  if (state_ == state::streaming && !close_requested_) {
    close_requested_ = true;
    flush();
  }
}

void session::flush() {
  if (writing_ || state_ != state::streaming || disconnected_) return;
  if (!pending_.empty()) {
    inflight_.swap(pending_);
    pending_.clear();
    writing_ = true;
    stream_.expires_after(server_->options.write_timeout);
    net::async_write(stream_, bhttp::make_chunk(net::buffer(inflight_)),
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_written(ec); });
    return;
  }
  if (close_requested_ && !last_chunk_sent_) {
    last_chunk_sent_ = true;
    writing_ = true;
    stream_.expires_after(server_->options.write_timeout);
    net::async_write(stream_, bhttp::make_chunk_last(),
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_written(ec); });
  }
}

void session::on_written(beast::error_code ec) {
  writing_ = false;
  inflight_.clear();
  if (ec) return mark_disconnected();
  stream_.expires_never();  // between events the model may take its time
  if (last_chunk_sent_ && pending_.empty()) {
    stream_sr_.reset();
    stream_head_.reset();
    return finish_response();
  }
  flush();
}

void session::finish_response() {
  state_ = state::reading;
  on_disconnect_ = nullptr;
  if (watching_) {
    // Ends the peer watch; nothing else is outstanding on the socket at this point.
    beast::error_code ec;
    stream_.socket().cancel(ec);
    watching_ = false;
  }
  if (!keep_alive_ || draining_) {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    return close_socket();
  }
  read_header();
}

// Answers an error the server found itself, then closes: the rest of the request may be unread.
void session::fail_request(int status, std::string message) {
  if (state_ == state::closed || state_ == state::lingering) return;
  const auto& make = server_->options.error_response;
  http_response r = make ? make(status, std::move(message)) : default_error_response(status, std::move(message));
  bhttp::response<bhttp::string_body> res;
  res.version(11);
  res.result(static_cast<unsigned>(status));
  res.set(bhttp::field::server, "troupe");
  res.set(bhttp::field::content_type, r.content_type);
  for (auto& [k, v] : r.headers) res.insert(k, v);
  res.body() = std::move(r.body);
  res.keep_alive(false);
  res.prepare_payload();
  const bool had_request = state_ == state::handling;
  res_ = std::make_shared<bhttp::response<bhttp::string_body>>(std::move(res));
  state_ = state::writing;
  writing_ = true;
  stream_.expires_after(server_->options.write_timeout);
  bhttp::async_write(stream_, *res_, [self = shared_from_this(), had_request](beast::error_code ec, size_t) {
    self->writing_ = false;
    self->res_.reset();
    if (ec) return had_request ? self->mark_disconnected() : self->close_socket();
    self->on_disconnect_ = nullptr;
    self->linger_close();
  });
}

// Half-closes and reads what the client still sends (briefly), so that it reads the error
// response instead of a reset caused by closing with unread input.
void session::linger_close() {
  state_ = state::lingering;
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.expires_after(std::chrono::seconds(2));
  linger_read();
}

void session::linger_read() {
  stream_.async_read_some(net::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t) {
    if (ec) return self->close_socket();
    self->linger_read();
  });
}

void session::close_socket() {
  state_ = state::closed;
  on_disconnect_ = nullptr;  // it may hold the writer, which holds this session
  beast::error_code ec;
  stream_.socket().close(ec);
  server_->forget(id_);
}

void session::drain() {
  draining_ = true;
  // Idle keep-alive connections close now; one that has begun sending a request gets it served.
  const bool idle = state_ == state::reading && buffer_.size() == 0 && (!parser_ || !parser_->got_some());
  if (idle) close_socket();
}

void session::force_close() {
  if (state_ != state::handling && state_ != state::writing && state_ != state::streaming)
    return close_socket();
  mark_disconnected();
}

// ---------------------------------------------------------------------------------------------

template <class F>
void http_server::impl::for_each_session(F f) {
  std::vector<std::shared_ptr<session>> live;
  {
    std::lock_guard lock(sessions_mu);
    for (auto& [id, w] : sessions) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->post([s, f] { f(*s); });
}

void http_server::impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    self->on_accept(ec, std::move(socket));
  });
}

void http_server::impl::on_accept(beast::error_code ec, tcp::socket socket) {
  if (stopping.load() || ec == net::error::operation_aborted) return;
  if (ec) {
    // Out of descriptors and the like: wait a little instead of spinning on the error.
    accept_retry.expires_after(std::chrono::milliseconds(50));
    accept_retry.async_wait([self = shared_from_this()](beast::error_code e) {
      if (!e && !self->stopping.load()) self->accept();
    });
    return;
  }
  std::shared_ptr<session> s;
  {
    std::lock_guard lock(sessions_mu);
    const uint64_t id = next_session++;
    s = std::make_shared<session>(std::move(socket), shared_from_this(), id);
    sessions.emplace(id, s);
  }
  s->start();
  accept();
}

http_server::http_server(std::shared_ptr<impl> impl) : impl_(std::move(impl)) {}

http_server::~http_server() { stop(); }

expected<std::unique_ptr<http_server>> http_server::start(http_server_options options, http_handler handler) {
  auto im = std::make_shared<impl>();
  im->options = std::move(options);
  im->handler = std::move(handler);
  if (!im->handler) return make_error(errc::invalid_argument, "http_server: no handler");
  const std::string where = im->options.host + ":" + std::to_string(im->options.port);
  beast::error_code ec;
  const auto addr = net::ip::make_address(im->options.host, ec);
  if (ec) return make_error(errc::invalid_argument, "http_server: bad host address " + im->options.host);
  const tcp::endpoint ep(addr, im->options.port);
  im->acceptor.open(ep.protocol(), ec);
  if (!ec) im->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) im->acceptor.bind(ep, ec);
  if (!ec) im->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return make_error(errc::io_error, "http_server: cannot listen on " + where + ": " + ec.message());
  im->port = im->acceptor.local_endpoint().port();
  im->work.emplace(im->ioc.get_executor());
  im->accept();
  const int n = std::max(1, im->options.threads);
  for (int i = 0; i < n; ++i) {
    im->threads.emplace_back([raw = im.get()] {
      // A handler that throws past its own catch must not take the whole server down.
      while (true) {
        try {
          raw->ioc.run();
          return;
        } catch (...) {
        }
      }
    });
  }
  return std::unique_ptr<http_server>(new http_server(std::move(im)));
}

uint16_t http_server::port() const noexcept { return impl_->port; }

size_t http_server::connections() const noexcept {
  std::lock_guard lock(impl_->sessions_mu);
  return impl_->sessions.size();
}

void http_server::stop(std::chrono::milliseconds drain_timeout) {
  std::lock_guard stop_lock(impl_->stop_mu);
  if (impl_->joined.load()) return;
  impl_->stopping = true;
  net::post(impl_->accept_strand, [im = impl_] {
    beast::error_code ec;
    im->acceptor.close(ec);
    im->accept_retry.cancel();
  });
  impl_->for_each_session([](session& s) { s.drain(); });
  {
    std::unique_lock lock(impl_->sessions_mu);
    impl_->sessions_cv.wait_for(lock, drain_timeout, [&] { return impl_->sessions.empty(); });
  }
  // Past the deadline: cut the rest (their requests see a disconnect), give that a moment.
  impl_->for_each_session([](session& s) { s.force_close(); });
  {
    std::unique_lock lock(impl_->sessions_mu);
    impl_->sessions_cv.wait_for(lock, std::chrono::milliseconds(500), [&] { return impl_->sessions.empty(); });
  }
  impl_->work.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  // Completions still queued (the aborted accept, closed sessions) hold the impl that owns the
  // io_context, a cycle that kept every stopped server in memory (ASan's leak check): run them.
  impl_->ioc.restart();
  impl_->ioc.poll();
  impl_->joined = true;
}

}  // namespace troupe
