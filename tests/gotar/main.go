// gotar reads tar streams with Go's archive/tar and reports, for each one,
// the entries it reads or where it refused: the reference the differential
// test (tests/test_gotar.py) holds debchunk's reader to.
//
// Input on stdin: cases, each an 8-byte big-endian length and that many
// bytes of a tar stream.  Output on stdout: one JSON line per case, in
// order.  Strings from the tar (names, link targets, xattr names and
// values) are given in hex, as they may be any bytes.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"sort"
	"strings"
)

// Content larger than this is not read (a sparse entry may claim far more
// than its bytes); its digest is reported as "unread".
const maxContent = 64 << 20

const xattrPrefix = "SCHILY.xattr."

type entry struct {
	Name     string      `json:"name"`
	Link     string      `json:"link"`
	Type     int         `json:"type"`
	Mode     int64       `json:"mode"`
	UID      int         `json:"uid"`
	GID      int         `json:"gid"`
	Size     int64       `json:"size"`
	Mtime    int64       `json:"mtime"`
	Devmajor int64       `json:"devmajor"`
	Devminor int64       `json:"devminor"`
	Xattrs   [][2]string `json:"xattrs"`
	Sha256   string      `json:"sha256"`
}

type result struct {
	Entries []entry `json:"entries"`
	// Empty when the stream read to its end; else Go's error, after the
	// entries read whole before it.
	Error string `json:"error"`
}

func read(data []byte) result {
	// Not an io.Seeker: layers reach clients as a stream.
	tr := tar.NewReader(struct{ io.Reader }{bytes.NewReader(data)})
	out := result{Entries: []entry{}}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			out.Error = err.Error()
			return out
		}
		e := entry{
			Name:     hex.EncodeToString([]byte(hdr.Name)),
			Link:     hex.EncodeToString([]byte(hdr.Linkname)),
			Type:     int(hdr.Typeflag),
			Mode:     hdr.Mode,
			UID:      hdr.Uid,
			GID:      hdr.Gid,
			Size:     hdr.Size,
			Mtime:    hdr.ModTime.Unix(),
			Devmajor: hdr.Devmajor,
			Devminor: hdr.Devminor,
			Xattrs:   [][2]string{},
		}
		// What containerd and moby apply: every SCHILY.xattr.* PAX record,
		// empty values included (Header.Xattrs leaves those out).
		for k, v := range hdr.PAXRecords {
			if strings.HasPrefix(k, xattrPrefix) {
				name := hex.EncodeToString([]byte(k[len(xattrPrefix):]))
				e.Xattrs = append(e.Xattrs, [2]string{name, hex.EncodeToString([]byte(v))})
			}
		}
		sort.Slice(e.Xattrs, func(i, j int) bool { return e.Xattrs[i][0] < e.Xattrs[j][0] })
		if hdr.Size > maxContent {
			e.Sha256 = "unread"
		} else {
			h := sha256.New()
			if _, err := io.Copy(h, tr); err != nil {
				out.Error = err.Error()
				return out
			}
			e.Sha256 = hex.EncodeToString(h.Sum(nil))
		}
		out.Entries = append(out.Entries, e)
	}
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	var size [8]byte
	for {
		if _, err := io.ReadFull(in, size[:]); err != nil {
			if err == io.EOF {
				return
			}
			panic(err)
		}
		data := make([]byte, binary.BigEndian.Uint64(size[:]))
		if _, err := io.ReadFull(in, data); err != nil {
			panic(err)
		}
		if err := enc.Encode(read(data)); err != nil {
			panic(err)
		}
		if err := w.Flush(); err != nil {
			panic(err)
		}
	}
}
