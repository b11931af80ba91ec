// The KServe v2 model metadata and model readiness routes TorchServe 0.12 lacks, as a TorchServe
// endpoint plugin (its own extension mechanism: a jar in plugins_path). TorchServe answers
// `POST /v2/models/{name}/infer` and `/v2/health/ready` itself, but not `GET /v2/models/{name}`
// (which `spindle loadtest` reads once, before any load, to learn the tensors) nor
// `GET /v2/models/{name}/ready`. A management plugin only sees what TorchServe's own inference
// routes passed on (the inference and management APIs share one address here), so every
// inference request still takes TorchServe's own path.
//
// The metadata of model NAME is the file NAME.json in the directory $SPINDLE_V2_METADATA,
// written by bench/torchserve/start.sh from the model's config.toml. A model is ready once one
// of its workers runs.
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.pytorch.serve.servingsdk.Context;
import org.pytorch.serve.servingsdk.Model;
import org.pytorch.serve.servingsdk.ModelServerEndpoint;
import org.pytorch.serve.servingsdk.Worker;
import org.pytorch.serve.servingsdk.annotations.Endpoint;
import org.pytorch.serve.servingsdk.annotations.helpers.EndpointTypes;
import org.pytorch.serve.servingsdk.http.Request;
import org.pytorch.serve.servingsdk.http.Response;

@Endpoint(
        urlPattern = "v2",
        endpointType = EndpointTypes.MANAGEMENT,
        description = "KServe v2 model metadata and readiness")
public class V2Metadata extends ModelServerEndpoint {
    @Override
    public void doGet(Request req, Response rsp, Context ctx) throws IOException {
        // /v2/models/NAME or /v2/models/NAME/ready (query strings are not part of the URI here).
        String[] parts = req.getRequestURI().split("\\?", 2)[0].split("/");
        if (parts.length < 4 || parts.length > 5 || !parts[2].equals("models")
                || (parts.length == 5 && !parts[4].equals("ready"))) {
            answer(rsp, 404, "{\"error\": \"not found\"}");
            return;
        }
        String name = parts[3];
        Model model = ctx.getModels().get(name);
        if (model == null) {
            answer(rsp, 404, "{\"error\": \"model '" + name.replace("\"", "") + "' is not served here\"}");
            return;
        }
        if (parts.length == 5) {
            boolean running = false;
            for (Worker worker : model.getModelWorkers()) {
                running |= worker.isRunning();
            }
            answer(rsp, running ? 200 : 503, running ? "{}" : "{\"error\": \"no worker runs yet\"}");
            return;
        }
        Path file = Path.of(System.getenv("SPINDLE_V2_METADATA"), name + ".json");
        if (!Files.isRegularFile(file)) {
            answer(rsp, 404, "{\"error\": \"no metadata for model '" + name.replace("\"", "") + "'\"}");
            return;
        }
        answer(rsp, 200, Files.readString(file));
    }

    private static void answer(Response rsp, int status, String body) throws IOException {
        rsp.setStatus(status);
        rsp.setContentType("application/json");
        try (OutputStream out = rsp.getOutputStream()) {
            out.write(body.getBytes(StandardCharsets.UTF_8));
        }
    }
}
