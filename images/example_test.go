package images_test

import (
	"fmt"
	"strings"

	"github.com/sandbox-runner/sandbox-runner/images"
)

func ExampleCatalog_Lookup() {
	rt, _ := images.DefaultCatalog().Lookup("csharp")
	fmt.Println(rt.Name, rt.Image)
	java, _ := images.DefaultCatalog().Lookup("java")
	fmt.Println(strings.Join(java.Command(images.Vars{File: "/code/Main.java", MemoryBytes: 256 << 20}, nil), " "))
	// Output:
	// dotnet mcr.microsoft.com/dotnet/sdk:8.0
	// java -Xmx192m -Xss64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData -cp /tmp Main
}

func ExampleParseCredentials() {
	creds, _ := images.ParseCredentials(strings.NewReader(`{"auths": {"https://index.docker.io/v1/": {"username": "me", "password": "secret"}}}`))
	// containerd asks for the host it talks to.
	user, _, _ := creds.Lookup("registry-1.docker.io")
	fmt.Println(user)
	// Output: me
}
