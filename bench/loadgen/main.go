// Command loadgen is the load generator of the server benchmark (bench/server.ts): it holds many
// WebSocket connections to one server and times fan-outs until the LAST connection has the message.
//
// It is driven over stdin/stdout, one JSON object per line each way:
//
//	{"cmd":"open","n":1000}          open n more connections (at most -concurrency dials at once)
//	{"cmd":"close"}                  drop every connection (TCP close, no close handshake)
//	{"cmd":"join"}                   every connection sends the text "join"; done when each has
//	                                 received the text "joined"
//	{"cmd":"broadcast"}              connection 0 sends a 64 B text "broadcast <round>" (space padded);
//	{"cmd":"publish"}                the server must send those 64 bytes as ONE binary message to
//	                                 every connection (broadcast) or every topic member (publish)
//
// Every command may carry "timeout_ms" (default 60000) and is answered with
// {"ok":true,"ms":...} or {"ok":false,"error":"..."}. Times come from one clock: t0 just before the
// trigger is written, t1 when the last connection's reader got the message. Build without modules:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o loadgen bench/loadgen/main.go
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

type command struct {
	Cmd       string `json:"cmd"`
	N         int    `json:"n"`
	TimeoutMs int    `json:"timeout_ms"`
}

// round is one fan-out awaited on every connection.
type round struct {
	id   int64
	kind int    // websocket.TextMessage or websocket.BinaryMessage
	want []byte // the exact payload every connection must receive
	left int64  // connections still waiting
	done chan struct{}
	// at[i]: when connection i got the message (each reader writes only its own slot).
	at []time.Time
}

type conn struct {
	idx     int
	ws      *websocket.Conn
	seen    int64 // the last round counted on this connection (its reader only)
	dropped int32 // set before we close it ourselves
}

var (
	current atomic.Pointer[round]
	lost    int64 // connections the server ended while we still held them
	rounds  int64
)

func (c *conn) read() {
	for {
		kind, data, err := c.ws.ReadMessage()
		if err != nil {
			if atomic.LoadInt32(&c.dropped) == 0 {
				atomic.AddInt64(&lost, 1)
			}
			return
		}
		r := current.Load()
		if r == nil || c.seen == r.id || kind != r.kind || !bytes.Equal(data, r.want) {
			continue
		}
		c.seen = r.id
		if c.idx < len(r.at) {
			r.at[c.idx] = time.Now()
		}
		if atomic.AddInt64(&r.left, -1) == 0 {
			close(r.done)
		}
	}
}

func dialAll(dialer *websocket.Dialer, url string, first, n, concurrency int) ([]*conn, int64, error) {
	out := make([]*conn, n)
	jobs := make(chan int)
	var retries int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < concurrency && w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var ws *websocket.Conn
				var err error
				// A refused or reset dial (a full accept backlog) is retried a few times.
				for attempt := 0; attempt < 4; attempt++ {
					if attempt > 0 {
						atomic.AddInt64(&retries, 1)
						time.Sleep(time.Duration(50*attempt) * time.Millisecond)
					}
					ws, _, err = dialer.Dial(url, nil)
					if err == nil {
						break
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", first+i, err)
					}
					mu.Unlock()
					continue
				}
				c := &conn{idx: first + i, ws: ws}
				out[i] = c
				go c.read()
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		for _, c := range out {
			if c != nil {
				atomic.StoreInt32(&c.dropped, 1)
				c.ws.Close()
			}
		}
		return nil, retries, firstErr
	}
	return out, retries, nil
}

// fanOut starts a round over every connection, runs trigger, and waits for the last receipt.
func fanOut(conns []*conn, kind int, want []byte, timeout time.Duration, trigger func() error) (map[string]any, error) {
	r := &round{
		id:   atomic.AddInt64(&rounds, 1),
		kind: kind,
		want: want,
		left: int64(len(conns)),
		done: make(chan struct{}),
		at:   make([]time.Time, len(conns)),
	}
	current.Store(r)
	defer current.Store(nil)
	t0 := time.Now()
	if err := trigger(); err != nil {
		return nil, err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-r.done:
	case <-timer.C:
		got := int64(len(conns)) - atomic.LoadInt64(&r.left)
		return nil, fmt.Errorf("timed out after %v: %d of %d connections got the message (%d lost)",
			timeout, got, len(conns), atomic.LoadInt64(&lost))
	}
	ms := make([]float64, len(r.at))
	for i, t := range r.at {
		ms[i] = float64(t.Sub(t0).Microseconds()) / 1000
	}
	sort.Float64s(ms)
	return map[string]any{
		"ms":       ms[len(ms)-1],
		"first_ms": ms[0],
		"p50_ms":   ms[len(ms)/2],
		"received": len(conns),
	}, nil
}

func padded(s string) []byte {
	return []byte(fmt.Sprintf("%-64s", s))
}

func main() {
	url := flag.String("url", "", "ws:// URL of the server")
	concurrency := flag.Int("concurrency", 100, "dials in flight at once")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required")
		os.Exit(2)
	}
	dialer := &websocket.Dialer{
		NetDialContext:   (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
		HandshakeTimeout: 30 * time.Second,
		ReadBufferSize:   1024,
		WriteBufferSize:  1024,
	}
	out := json.NewEncoder(os.Stdout)
	var conns []*conn
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			out.Encode(map[string]any{"ok": false, "error": "bad command: " + err.Error()})
			continue
		}
		timeout := 60 * time.Second
		if cmd.TimeoutMs > 0 {
			timeout = time.Duration(cmd.TimeoutMs) * time.Millisecond
		}
		var res map[string]any
		var err error
		switch cmd.Cmd {
		case "open":
			t0 := time.Now()
			var more []*conn
			var retries int64
			more, retries, err = dialAll(dialer, *url, len(conns), cmd.N, *concurrency)
			if err == nil {
				conns = append(conns, more...)
				res = map[string]any{
					"ms":      float64(time.Since(t0).Microseconds()) / 1000,
					"open":    len(conns),
					"retries": retries,
				}
			}
		case "close":
			for _, c := range conns {
				atomic.StoreInt32(&c.dropped, 1)
				c.ws.Close()
			}
			conns = nil
			atomic.StoreInt64(&lost, 0)
			res = map[string]any{"open": 0}
		case "join":
			if len(conns) == 0 {
				err = errors.New("no connections")
				break
			}
			res, err = fanOut(conns, websocket.TextMessage, []byte("joined"), timeout, func() error {
				for _, c := range conns {
					if e := c.ws.WriteMessage(websocket.TextMessage, []byte("join")); e != nil {
						return e
					}
				}
				return nil
			})
		case "broadcast", "publish":
			if len(conns) == 0 {
				err = errors.New("no connections")
				break
			}
			payload := padded(fmt.Sprintf("%s %d", cmd.Cmd, atomic.LoadInt64(&rounds)+1))
			res, err = fanOut(conns, websocket.BinaryMessage, payload, timeout, func() error {
				return conns[0].ws.WriteMessage(websocket.TextMessage, payload)
			})
		default:
			err = fmt.Errorf("unknown command %q", cmd.Cmd)
		}
		if err != nil {
			out.Encode(map[string]any{"ok": false, "error": err.Error()})
			continue
		}
		res["ok"] = true
		res["lost"] = atomic.LoadInt64(&lost)
		out.Encode(res)
	}
	for _, c := range conns {
		atomic.StoreInt32(&c.dropped, 1)
		c.ws.Close()
	}
}
