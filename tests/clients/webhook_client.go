// A client set up like the Kubernetes API server's webhook transport (HTTP/1.1 keep-alive, 25 idle connections per
// host, idle connections kept 90 s, no retry of a failed POST), for the tests of otel-injector's connection handling.
//
//	webhook_client keepalive URL CA BODY IDLES   POST BODY, then wait each idle (e.g. 10s,93s) and POST again on
//	                                            the same pool; prints {"requests":N,"failures":F,"reused":R}
//	webhook_client oversized URL CA SIZE         POST SIZE bytes; prints the status code or the error
//	webhook_client load URL CA BODY N CONCURRENCY  POST BODY N times, CONCURRENCY at once, on one pool; prints
//	                                            {"requests":N,"failures":F,"p50_ms":..,"p99_ms":..,"max_ms":..}
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

func client(caFile string) *http.Client {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}},
			MaxIdleConnsPerHost: 25,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   false,
		},
	}
}

func keepalive(url, caFile, bodyFile, idles string) {
	c := client(caFile)
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	waits := []time.Duration{0}
	for _, s := range strings.Split(idles, ",") {
		d, err := time.ParseDuration(s)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		waits = append(waits, d)
	}
	requests, failures, reused := 0, 0, 0
	for _, wait := range waits {
		time.Sleep(wait)
		requests++
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, err := c.Do(req)
		if err != nil {
			failures++
			fmt.Fprintf(os.Stderr, "after %v idle: %v\n", wait, err)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failures++
			fmt.Fprintf(os.Stderr, "after %v idle: status %d\n", wait, resp.StatusCode)
		}
	}
	out, _ := json.Marshal(map[string]int{"requests": requests, "failures": failures, "reused": reused})
	fmt.Println(string(out))
}

func oversized(url, caFile, size string) {
	n, err := strconv.Atoi(size)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	resp, err := client(caFile).Post(url, "application/json", bytes.NewReader(bytes.Repeat([]byte("x"), n)))
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	fmt.Printf("%d %s", resp.StatusCode, text)
}

func load(url, caFile, bodyFile, count, concurrency string) {
	c := client(caFile)
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	n, _ := strconv.Atoi(count)
	workers, _ := strconv.Atoi(concurrency)
	jobs := make(chan int)
	var mu sync.Mutex
	var latencies []float64
	failures := 0
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				started := time.Now()
				req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				failed := err != nil
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					failed = resp.StatusCode != 200
					if failed {
						fmt.Fprintf(os.Stderr, "status %d\n", resp.StatusCode)
					}
				} else {
					fmt.Fprintln(os.Stderr, err)
				}
				mu.Lock()
				latencies = append(latencies, float64(time.Since(started).Microseconds())/1000)
				if failed {
					failures++
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	sort.Float64s(latencies)
	at := func(q float64) float64 { return latencies[int(q*float64(len(latencies)-1))] }
	out, _ := json.Marshal(map[string]float64{"requests": float64(n), "failures": float64(failures),
		"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": latencies[len(latencies)-1]})
	fmt.Println(string(out))
}

func main() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: webhook_client keepalive URL CA BODY IDLES | oversized URL CA SIZE | load URL CA BODY N CONCURRENCY")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "keepalive":
		if len(os.Args) < 6 {
			os.Exit(2)
		}
		keepalive(os.Args[2], os.Args[3], os.Args[4], os.Args[5])
	case "oversized":
		oversized(os.Args[2], os.Args[3], os.Args[4])
	case "load":
		if len(os.Args) < 7 {
			os.Exit(2)
		}
		load(os.Args[2], os.Args[3], os.Args[4], os.Args[5], os.Args[6])
	default:
		os.Exit(2)
	}
}
