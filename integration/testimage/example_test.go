package testimage_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sandbox-runner/sandbox-runner/integration/testimage"
)

func ExampleWriteArchive() {
	rootfs, err := os.MkdirTemp("", "rootfs-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(rootfs)
	if err := os.WriteFile(rootfs+"/hello.txt", []byte("hello\n"), 0o644); err != nil {
		log.Fatal(err)
	}

	var buf bytes.Buffer
	err = testimage.WriteArchive(&buf, rootfs, testimage.Options{
		Ref: "sandbox-runner.test/hello:v1",
		Cmd: []string{"/bin/cat", "/hello.txt"},
	})
	if err != nil {
		log.Fatal(err)
	}

	// The index names the image for containerd's client.Import.
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		if hdr.Name != ocispec.ImageIndexFile {
			continue
		}
		var idx ocispec.Index
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			log.Fatal(err)
		}
		a := idx.Manifests[0].Annotations
		fmt.Println(a["io.containerd.image.name"])
		fmt.Println(a[ocispec.AnnotationRefName])
	}
	// Output:
	// sandbox-runner.test/hello:v1
	// v1
}
