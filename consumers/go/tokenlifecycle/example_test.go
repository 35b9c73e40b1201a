package tokenlifecycle_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"

	"github.com/redis/go-redis/v9"
	"github.com/token-lifecycle-worker/token-lifecycle-worker/consumers/go/tokenlifecycle"
)

// A service calling an API with the worker's token (the README's example; it needs a running
// stack, e.g. `make demo`, so it is compiled but not run).
func Example() {
	reader := tokenlifecycle.NewReader(redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}), tokenlifecycle.Options{Cache: true}) // one per process
	defer reader.Close()
	api := &http.Client{Transport: &tokenlifecycle.Transport{Reader: reader, ClientID: "orders-service"}}

	response, err := api.Get("http://127.0.0.1:8180/api/resource")
	var unavailable *tokenlifecycle.TokenUnavailableError
	switch {
	case errors.As(err, &unavailable):
		log.Printf("no token yet for %s: is it registered (tokenctl status)?", unavailable.ClientID)
	case err != nil:
		log.Fatal(err)
	default:
		defer response.Body.Close()
		body, _ := io.ReadAll(response.Body)
		fmt.Println(response.Status, string(body))
	}
}
