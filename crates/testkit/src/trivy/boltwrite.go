// Reads JSON lines {"path":[bucket...],"key":K,"value":V} on stdin and
// writes them into a BoltDB file (argv[1]) with the bbolt library.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

type entry struct {
	Path  []string        `json:"path"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

func main() {
	db, err := bolt.Open(os.Args[1], 0o600, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	err = db.Update(func(tx *bolt.Tx) error {
		for in.Scan() {
			var e entry
			if err := json.Unmarshal(in.Bytes(), &e); err != nil {
				return err
			}
			b, err := tx.CreateBucketIfNotExists([]byte(e.Path[0]))
			if err != nil {
				return err
			}
			for _, p := range e.Path[1:] {
				if b, err = b.CreateBucketIfNotExists([]byte(p)); err != nil {
					return err
				}
			}
			if err := b.Put([]byte(e.Key), e.Value); err != nil {
				return err
			}
		}
		return in.Err()
	})
	if err == nil {
		err = db.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
