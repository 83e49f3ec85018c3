//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"moviestream/pkg/broker"
	"moviestream/pkg/config"
)

// TestRabbitMQUsers: after `make up` each client has its own user with the
// least permissions it needs (docs/security.md): guest is gone; the gateway
// and billing cannot log in to the management API, the administrator can;
// the gateway cannot consume billing_queue, billing cannot consume the DLQ,
// the test user cannot declare a queue outside test.* (each refusal is
// ACCESS_REFUSED, 403, from the broker).
func TestRabbitMQUsers(t *testing.T) {
	var env config.Reader
	gateway := broker.ConfigFromEnv(&env, "GATEWAY_RABBITMQ", "e2e-gateway-user")
	billing := broker.ConfigFromEnv(&env, "BILLING_RABBITMQ", "e2e-billing-user")
	admin := broker.ConfigFromEnv(&env, "RABBITMQ_ADMIN", "e2e-admin")
	test := broker.ConfigFromEnv(&env, "TEST_RABBITMQ", "e2e-test-user")
	topo := broker.TopologyFromEnv(&env)
	mgmt := "http://" + net.JoinHostPort(managementHost(gateway), env.String("RABBITMQ_MANAGEMENT_PORT"))
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	api := func(t *testing.T, as broker.Config, path string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, mgmt+path, nil)
		req.SetBasicAuth(as.User, as.Password)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("management API: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	t.Run("guest is deleted", func(t *testing.T) {
		if code := api(t, admin, "/api/users/guest"); code != http.StatusNotFound {
			t.Errorf("GET /api/users/guest as %s: %d, want 404", admin.User, code)
		}
	})
	t.Run("the administrator logs in to the management API", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, mgmt+"/api/whoami", nil)
		req.SetBasicAuth(admin.User, admin.Password)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("management API: %v", err)
		}
		defer resp.Body.Close()
		var who struct {
			Name string `json:"name"`
			Tags any    `json:"tags"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&who); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("whoami: %d %v", resp.StatusCode, err)
		}
		if tags, _ := json.Marshal(who.Tags); !strings.Contains(string(tags), `"administrator"`) {
			t.Errorf("whoami: %s has tags %v, want administrator", who.Name, who.Tags)
		}
	})
	for _, svc := range []broker.Config{gateway, billing, test} {
		t.Run(svc.User+" cannot log in to the management API", func(t *testing.T) {
			if code := api(t, svc, "/api/whoami"); code != http.StatusUnauthorized {
				t.Errorf("whoami as %s: %d, want 401", svc.User, code)
			}
		})
	}
	refused := func(as broker.Config, op func(ch *amqp.Channel) error) func(t *testing.T) {
		return func(t *testing.T) {
			conn, err := broker.Dial(as)
			if err != nil {
				t.Fatalf("dial as %s: %v", as.User, err)
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				t.Fatalf("channel: %v", err)
			}
			err = op(ch)
			var aerr *amqp.Error
			if !errors.As(err, &aerr) || aerr.Code != amqp.AccessRefused {
				t.Fatalf("as %s: %v, want ACCESS_REFUSED (403)", as.User, err)
			}
		}
	}
	consume := func(queue string) func(ch *amqp.Channel) error {
		return func(ch *amqp.Channel) error {
			_, err := ch.Consume(queue, "", false, false, false, false, nil)
			return err
		}
	}
	t.Run("the gateway's user cannot consume "+topo.Queue, refused(gateway, consume(topo.Queue)))
	t.Run("billing's user cannot consume "+topo.DeadLetterQueue(), refused(billing, consume(topo.DeadLetterQueue())))
	t.Run("the test user cannot declare a queue outside test.*", refused(test, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("e2e.not-test", false, true, false, false, nil)
		return err
	}))
}

// TestServicesRunUnprivileged: PM2 (root's daemon) runs the three services
// as the system user moviestream, which cannot write to the repository root
// or to bin/ (docs/security.md).
func TestServicesRunUnprivileged(t *testing.T) {
	out, err := exec.Command("pm2", "jlist").Output()
	if err != nil {
		t.Fatalf("pm2 jlist: %v", err)
	}
	var apps []struct {
		Name string `json:"name"`
		PID  int    `json:"pid"`
	}
	if err := json.Unmarshal(out, &apps); err != nil {
		t.Fatalf("pm2 jlist: %v", err)
	}
	pids := map[string]int{}
	for _, a := range apps {
		pids[a.Name] = a.PID
	}
	for _, svc := range []string{"gateway_app", "inventory_app", "billing_app"} {
		t.Run(svc+" runs as moviestream", func(t *testing.T) {
			pid := pids[svc]
			if pid <= 0 {
				t.Fatalf("%s: no pid in root's PM2 (pm2 jlist)", svc)
			}
			user, err := exec.Command("ps", "-o", "user=", "-p", strconv.Itoa(pid)).Output()
			if err != nil {
				t.Fatalf("ps -p %d: %v", pid, err)
			}
			if got := strings.TrimSpace(string(user)); got != "moviestream" {
				t.Errorf("%s (pid %d) runs as %q, want moviestream", svc, pid, got)
			}
		})
	}
	bin, _ := servicesRunFrom(t)
	for _, dir := range []string{repoRoot, filepath.Join(repoRoot, "bin"), bin} {
		t.Run("moviestream cannot write to "+dir, func(t *testing.T) {
			probe := filepath.Join(dir, ".privilege-probe-"+strconv.Itoa(os.Getpid()))
			t.Cleanup(func() { _ = os.Remove(probe) })
			out, err := exec.Command("runuser", "-u", "moviestream", "--", "touch", probe).CombinedOutput()
			if err == nil {
				t.Errorf("runuser -u moviestream -- touch %s succeeded", probe)
			} else if !strings.Contains(string(out), "Permission denied") {
				t.Errorf("touch %s as moviestream: %v %s, want Permission denied", probe, err, out)
			}
		})
	}
	t.Run("moviestream reads .env but cannot write it", func(t *testing.T) {
		_, envFile := servicesRunFrom(t)
		if out, err := exec.Command("runuser", "-u", "moviestream", "--", "test", "-r", envFile).CombinedOutput(); err != nil {
			t.Errorf("moviestream cannot read %s: %v %s", envFile, err, out)
		}
		if err := exec.Command("runuser", "-u", "moviestream", "--", "test", "-w", envFile).Run(); err == nil {
			t.Errorf("moviestream can write %s", envFile)
		}
	})
}
